"""One check per IFEval instruction type: ``check(response, **args) -> bool`` (followed or not).

The rules are those of Google's IFEval checker (Zhou et al. 2023, arXiv:2311.07911;
``instruction_following_eval/instructions.py``, as lm-eval 0.4.13 ships it), written here from its
documented semantics; where a rule needs a pattern, the pattern is the reference's, because the pattern is
the definition. `registry.INSTRUCTIONS` names each check and the arguments it takes; ``args`` arrive
normalised there (numbers as ints, relations checked, strings stripped where the reference strips them).

Differences from the reference, each deliberate:

- keywords, forbidden words, section markers and postscript markers are matched as literal text (the
  reference pastes them into a regular expression unescaped, so "C++" would raise there);
- ``keywords:letter_frequency`` counts the character it is given even when that is no letter ("!" or
  "#", as two of IFEval's 541 prompts ask); the reference swaps such a character for a random letter;
- sentences and capitalised words are counted as `text` describes (the reference uses nltk's punkt);
- the language is detected with a seeded langdetect (`text.detect_language`).
"""

from __future__ import annotations

import json
import re
from collections import Counter

from alignkit.rewards.verifiers.ifeval.text import count_sentences, count_words, detect_language, word_tokens

LESS_THAN, AT_LEAST = "less than", "at least"
RELATIONS = (LESS_THAN, AT_LEAST)
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def compare(count: int, relation: str, threshold: int) -> bool:
    """``count < threshold`` for "less than", ``count >= threshold`` for "at least"."""
    return count < threshold if relation == LESS_THAN else count >= threshold


# ------------------------------------------------------------------------------------------ keywords


def keyword_existence(response: str, *, keywords: list[str]) -> bool:
    """Every keyword appears somewhere, ignoring case (inside longer words too)."""
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def keyword_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword's non-overlapping occurrences, ignoring case, compared with ``frequency``."""
    found = len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE))
    return compare(found, relation, frequency)


def forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    """No forbidden word appears as a whole word (between word boundaries), ignoring case."""
    return not any(
        re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words
    )


def letter_frequency(response: str, *, letter: str, let_frequency: int, let_relation: str) -> bool:
    """How often the (lower-cased) character occurs in the lower-cased response."""
    return compare(Counter(response.lower())[letter], let_relation, let_frequency)


# ------------------------------------------------------------------------------------------ language, length


def response_language(response: str, *, language: str) -> bool:
    """langdetect's language is ``language``; text it cannot judge (no letters) counts as followed."""
    found = detect_language(response)
    return found is None or found == language


def number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    """The sentence count (`text.count_sentences`) compared with ``num_sentences``."""
    return compare(count_sentences(response), relation, num_sentences)


def number_words(response: str, *, num_words: int, relation: str) -> bool:
    """The word count (``\\w+`` runs) compared with ``num_words``."""
    return compare(count_words(response), relation, num_words)


def number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Exactly ``num_paragraphs`` paragraphs separated by the markdown divider ``***``.

    An empty piece before the first or after the last divider does not count; an empty piece between two
    dividers fails the check.
    """
    pieces = re.split(r"\s?\*\*\*\s?", response)
    count = len(pieces)
    for i, piece in enumerate(pieces):
        if not piece.strip():
            if i not in (0, len(pieces) - 1):
                return False
            count -= 1
    return count == num_paragraphs


def nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    """Exactly ``num_paragraphs`` non-empty paragraphs split at ``\\n\\n``, and paragraph
    ``nth_paragraph`` starts with ``first_word`` (lower case; leading quotes and trailing punctuation off).

    As in the reference, the n-th paragraph is the n-th piece of the split, empty pieces included, while
    the count leaves the empty pieces out.
    """
    pieces = response.split("\n\n")
    count = sum(1 for p in pieces if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = pieces[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in ".,?!'\"":
            break
        first += ch.lower()
    return count == num_paragraphs and first == first_word


# ------------------------------------------------------------------------------------------ content


def number_placeholders(response: str, *, num_placeholders: int) -> bool:
    """At least ``num_placeholders`` square-bracket placeholders such as ``[address]``."""
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def postscript(response: str, *, postscript_marker: str) -> bool:
    """A postscript marker anywhere (case ignored): "P.S." also as "p. s.", "P.P.S" also as "p. p. s"."""
    text = response.lower()
    if postscript_marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif postscript_marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(postscript_marker.lower()) + r".*$"
    return bool(re.search(pattern, text, flags=re.MULTILINE))


# ------------------------------------------------------------------------------------------ format


def number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Exactly ``num_bullets`` markdown bullets: lines starting with ``*`` (not ``**``) or ``-``."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def constrained_response(response: str) -> bool:
    """The response contains one of "My answer is yes.", "My answer is no.", "My answer is maybe."."""
    text = response.strip()
    return any(option in text for option in CONSTRAINED_RESPONSES)


def number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """At least ``num_highlights`` non-empty ``*highlighted*`` spans on one line; ``**bold**`` counts too."""
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [
        h
        for h in re.findall(r"\*\*[^\n\*]*\*\*", response)
        if h.removeprefix("**").removesuffix("**").strip()
    ]
    return len(single) + len(double) >= num_highlights


def multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least ``num_sections`` sections, each opened by the marker and a number ("SECTION 1")."""
    pieces = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", response)
    return len(pieces) - 1 >= num_sections


def json_format(response: str) -> bool:
    """The whole response parses as JSON, after stripping a markdown code fence (```json ... ```)."""
    text = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def title(response: str) -> bool:
    """A non-empty title in double angular brackets on one line: ``<<poem of joy>>``."""
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


# ------------------------------------------------------------------------------------------ combination


def two_responses(response: str) -> bool:
    """Two different non-empty answers separated by ``******`` (empty ends allowed, no empty middle)."""
    answers = []
    pieces = response.split("******")
    for i, piece in enumerate(pieces):
        if piece.strip():
            answers.append(piece.strip())
        elif i not in (0, len(pieces) - 1):
            return False
    return len(answers) == 2 and answers[0] != answers[1]


def repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    """The response starts with the request, repeated word for word (case and outer spaces ignored)."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


# ------------------------------------------------------------------------------------------ start and end


def end_checker(response: str, *, end_phrase: str) -> bool:
    """The response ends with ``end_phrase`` (case ignored; outer spaces and double quotes off)."""
    return response.strip().strip('"').lower().endswith(end_phrase.lower())


def quotation(response: str) -> bool:
    """The whole response is wrapped in double quotation marks."""
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


# ------------------------------------------------------------------------------------------ case, punctuation


def capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    """The number of all-capital word tokens (`text.word_tokens`, ``str.isupper``) against the threshold."""
    capitals = sum(1 for token in word_tokens(response) if token.isupper())
    return compare(capitals, capital_relation, capital_frequency)


def english_capital(response: str) -> bool:
    """All letters are capitals and the language is English (undetectable text counts as English)."""
    return response.isupper() and detect_language(response) in ("en", None)


def english_lowercase(response: str) -> bool:
    """All letters are lower case and the language is English (undetectable text counts as English)."""
    return response.islower() and detect_language(response) in ("en", None)


def no_comma(response: str) -> bool:
    """No comma anywhere."""
    return "," not in response
