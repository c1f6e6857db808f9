"""How each instruction is said to the model: several phrasings per type, written for alignkit.

A phrasing is a ``str.format`` template over the instruction's kwargs (``{num_words}``, ``{keyword}``,
...) and a few derived fields (`fields`): ``{words}`` (the keywords, quoted and joined), ``{language_name}``,
``{ordinal}`` (of ``nth_paragraph``), ``{s}`` (a plural "s" unless the count is 1), ``{example}`` (a
sample title) and ``{placeholder}`` (a sample placeholder). Types with a relation have one list per relation: ``"type|at least"``, ``"type|less than"``.
Every phrasing states the check's rule exactly (what counts as a paragraph, a bullet, a section), so that
an answer that does what it says passes the verifier.
"""

from __future__ import annotations

import random
from typing import Any

from alignkit.data.instruction_prompts.arguments import LANGUAGES, PLACEHOLDER_EXAMPLES, TITLE_EXAMPLES

ORDINALS = ("first", "second", "third", "fourth", "fifth")

PHRASINGS: dict[str, tuple[str, ...]] = {
    "keywords:existence": (
        "Make sure your reply uses {words}.",
        "Work {words} into your answer somewhere.",
        "Be sure to include {words}.",
        "Your text has to contain {words}.",
    ),
    "keywords:frequency|at least": (
        'Use the word "{keyword}" at least {frequency} times.',
        'The word "{keyword}" should come up {frequency} or more times in your answer.',
        'Repeat the word "{keyword}" no fewer than {frequency} times.',
    ),
    "keywords:frequency|less than": (
        'Use the word "{keyword}" fewer than {frequency} times.',
        'Keep the number of times you write "{keyword}" below {frequency}.',
        'The word "{keyword}" may appear less than {frequency} times in total.',
    ),
    "keywords:forbidden_words": (
        "Keep {words} out of your reply entirely.",
        "Avoid {words} completely.",
        "Your reply must not contain {words}.",
        "Never write {words}.",
    ),
    "keywords:letter_frequency|at least": (
        'Let the letter "{letter}" occur at least {let_frequency} times in your reply.',
        'Use the letter "{letter}" {let_frequency} times or more.',
        'Make sure the letter "{letter}" shows up no fewer than {let_frequency} times.',
    ),
    "keywords:letter_frequency|less than": (
        'Use the letter "{letter}" fewer than {let_frequency} times.',
        'Keep the letter "{letter}" to less than {let_frequency} appearances.',
        'The letter "{letter}" may occur, but less than {let_frequency} times.',
    ),
    "language:response_language": (
        "Write your entire reply in {language_name}; do not switch to any other language.",
        "Answer only in {language_name}.",
        "Your whole response must be written in {language_name}, not English.",
        "Please respond in {language_name} from start to finish.",
    ),
    "length_constraints:number_sentences|at least": (
        "Write at least {num_sentences} sentences.",
        "Your reply should be {num_sentences} sentences long or longer.",
        "Use no fewer than {num_sentences} sentences.",
    ),
    "length_constraints:number_sentences|less than": (
        "Use fewer than {num_sentences} sentences.",
        "Keep it under {num_sentences} sentences.",
        "Your answer must have less than {num_sentences} sentences.",
    ),
    "length_constraints:number_paragraphs": (
        "Write exactly {num_paragraphs} paragraphs and separate them with the markdown divider ***.",
        "Split your reply into {num_paragraphs} paragraphs, with a line holding only *** between each pair.",
        "Your answer should have {num_paragraphs} paragraphs; mark each break between them with ***.",
    ),
    "length_constraints:number_words|at least": (
        "Write at least {num_words} words.",
        "Your reply should be {num_words} words or longer.",
        "Make the answer no shorter than {num_words} words.",
    ),
    "length_constraints:number_words|less than": (
        "Keep your reply under {num_words} words.",
        "Use fewer than {num_words} words.",
        "The whole answer must be shorter than {num_words} words.",
    ),
    "length_constraints:nth_paragraph_first_word": (
        "Write exactly {num_paragraphs} paragraphs separated by blank lines, and start paragraph number "
        '{nth_paragraph} with the word "{first_word}".',
        "Your reply needs {num_paragraphs} paragraphs with one empty line between them; the {ordinal} "
        'paragraph must begin with the word "{first_word}".',
        'Use {num_paragraphs} paragraphs divided by blank lines. Begin the {ordinal} one with "{first_word}".',
    ),
    "detectable_content:number_placeholders": (
        "Include at least {num_placeholders} placeholder{s} in square brackets, such as {placeholder}.",
        "Leave at least {num_placeholders} blank{s} for the reader to fill in, written in square brackets "
        "like {placeholder}.",
        "Your text must contain {num_placeholders} or more bracketed placeholders, e.g. {placeholder}.",
    ),
    "detectable_content:postscript": (
        "Close your reply with a postscript that begins with {postscript_marker}",
        "Finish with a short {postscript_marker} note after the main answer.",
        "After the main answer, add a line that opens with {postscript_marker} and a brief afterthought.",
    ),
    "detectable_format:number_bullet_lists": (
        'Give your answer as exactly {num_bullets} bullet points, each on its own line starting with "* ".',
        "Use exactly {num_bullets} markdown bullet points (lines that begin with a dash or an asterisk), "
        "no more and no fewer.",
        "Format the answer as a list of {num_bullets} bullets, written in markdown like:\n* one point\n"
        "* another point",
    ),
    "detectable_format:constrained_response": (
        'Include one of these sentences word for word: "My answer is yes." (you agree), "My answer is no." '
        '(you disagree) or "My answer is maybe." (you are unsure).',
        'Give your verdict with one exact sentence: either "My answer is yes." to agree, "My answer is no." '
        'to disagree, or "My answer is maybe." if it depends.',
        'Somewhere in the reply state your conclusion as "My answer is yes." for agreement, "My answer is '
        'no." for disagreement, or "My answer is maybe." when undecided.',
    ),
    "detectable_format:number_highlighted_sections": (
        "Pick out at least {num_highlights} key part{s} of your answer with markdown highlighting, for "
        "example *a key phrase*.",
        "Mark {num_highlights} or more important phrases in italics using single asterisks, like *this*.",
        "Use markdown emphasis (*text*) on at least {num_highlights} separate part{s} of your reply.",
    ),
    "detectable_format:multiple_sections": (
        'Organise your reply into {num_sections} sections, each starting with the label "{section_spliter} '
        'N" where N is its number.',
        "Your answer needs {num_sections} numbered sections, headed {section_spliter} 1, {section_spliter} 2 "
        "and so on.",
        "Split the answer into {num_sections} parts labelled {section_spliter} 1 to {section_spliter} "
        "{num_sections}.",
    ),
    "detectable_format:json_format": (
        "Format your whole reply as valid JSON; a ```json code block around it is fine.",
        "Return the answer as a JSON object and nothing else.",
        "Your entire output should be parseable JSON (you may wrap it in markdown ``` fences).",
    ),
    "detectable_format:title": (
        "Begin with a title inside double angle brackets, like <<{example}>>.",
        "Give your answer a title, written inside double angular brackets such as <<{example}>>.",
        "Put a title at the top, enclosed in << and >>.",
    ),
    "combination:two_responses": (
        "Give two different answers, separated by a line of six asterisks (******).",
        "Write two distinct versions and put ****** between them.",
        "Provide two alternative responses; separate them with exactly six asterisks: ******.",
    ),
    "combination:repeat_prompt": (
        "Before answering, copy the request above word for word (just the request, not these extra "
        "instructions), then give your answer.",
        "Start your reply by repeating the request exactly as it was written, leaving out these "
        "instructions, and then respond to it.",
        "First restate the request verbatim, without any change and without these added rules; only then "
        "answer it.",
    ),
    "startend:end_checker": (
        'End your reply with the exact phrase "{end_phrase}" and write nothing after it.',
        'Your last words must be "{end_phrase}"; nothing may follow.',
        'Finish the answer with "{end_phrase}" exactly.',
    ),
    "startend:quotation": (
        "Put your entire reply between double quotation marks.",
        "Put the whole answer inside one pair of double quotes.",
        'Enclose everything you write in double quotation marks ("like this").',
    ),
    "change_case:capital_word_frequency|at least": (
        "Use at least {capital_frequency} words written entirely in capital letters.",
        "Include {capital_frequency} or more words in ALL CAPS for emphasis.",
        "Write no fewer than {capital_frequency} words in full capitals.",
    ),
    "change_case:capital_word_frequency|less than": (
        "Use fewer than {capital_frequency} words written entirely in capital letters.",
        "Keep the number of words in ALL CAPS below {capital_frequency}.",
        "Write less than {capital_frequency} words in full capitals.",
    ),
    "change_case:english_capital": (
        "Write the whole reply in English, using capital letters only.",
        "Your entire answer must be in English and in UPPERCASE letters.",
        "Respond in English with every letter capitalised.",
    ),
    "change_case:english_lowercase": (
        "Write your whole reply in English, in lowercase letters only; no capitals anywhere.",
        "Use only lowercase letters in your English answer.",
        "Respond in English without a single capital letter.",
    ),
    "punctuation:no_comma": (
        "Do not use any commas.",
        "Your reply must contain no commas at all.",
        "Avoid commas entirely.",
        "Write without using a single comma.",
    ),
}

_RELATION_KEYS = ("relation", "let_relation", "capital_relation")
_PLURAL_KEYS = ("num_placeholders", "num_highlights")  # the counts that can be 1: ``{s}`` follows them


def phrasing_key(instruction_id: str, kwargs: dict[str, Any]) -> str:
    """The `PHRASINGS` key of an instruction: its id, with ``|relation`` for types that have one."""
    for name in _RELATION_KEYS:
        if name in kwargs:
            return f"{instruction_id}|{kwargs[name]}"
    return instruction_id


def quoted(words: list[str], conjunction: str) -> str:
    """``the word "a"``, ``the words "a" and "b"``, ``the words "a", "b" or "c"``."""
    marks = [f'"{w}"' for w in words]
    if len(marks) == 1:
        return f"the word {marks[0]}"
    return f"the words {', '.join(marks[:-1])} {conjunction} {marks[-1]}"


def fields(kwargs: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The template fields of one instruction: its kwargs and the derived ones (module docstring)."""
    out = dict(kwargs)
    if "keywords" in kwargs:
        out["words"] = quoted(kwargs["keywords"], "and")
    if "forbidden_words" in kwargs:
        out["words"] = quoted(kwargs["forbidden_words"], "or")
    if "language" in kwargs:
        out["language_name"] = LANGUAGES[kwargs["language"]]
    if "nth_paragraph" in kwargs:
        out["ordinal"] = ORDINALS[kwargs["nth_paragraph"] - 1]
    counts = [kwargs[k] for k in _PLURAL_KEYS if k in kwargs]
    out["s"] = "" if counts == [1] else "s"
    out["example"] = rng.choice(TITLE_EXAMPLES)
    out["placeholder"] = rng.choice(PLACEHOLDER_EXAMPLES)
    return out


def describe(instruction_id: str, kwargs: dict[str, Any], rng: random.Random) -> str:
    """One instruction as a sentence (or two), in a phrasing drawn with ``rng``."""
    template = rng.choice(PHRASINGS[phrasing_key(instruction_id, kwargs)])
    return template.format(**fields(kwargs, rng))


__all__ = ["PHRASINGS", "describe", "fields", "phrasing_key", "quoted"]
