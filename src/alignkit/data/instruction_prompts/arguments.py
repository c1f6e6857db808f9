"""The arguments (``kwargs``) of each instruction type, drawn from ranges like IFEval's and word lists of ours.

The argument names are those the ``ifeval`` verifier reads (`alignkit.rewards.verifiers.ifeval.registry`);
this module does not import it (the data layer imports no rewards), so a test checks every draw against it.
The ranges are IFEval's kinds of numbers scaled to what fits an answer of ~150 words (the recipe's
``max_new_tokens``): at least 40-120 words rather than 300, 2-4 paragraphs, 2-5 bullets.

The word lists keep combinations satisfiable (tests check each rule):

- no keyword, first word, end phrase, title example, section marker or postscript marker contains a
  forbidden word, so a forbidden word is never also required;
- none of them has a comma (``punctuation:no_comma`` may join any of them);
- none contains j, q, x or z, the letters a "fewer than N times" letter instruction counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

LESS_THAN, AT_LEAST = "less than", "at least"

KEYWORDS: tuple[str, ...] = (
    "lantern", "orbit", "meadow", "silver", "compass", "garden", "window", "river", "morning", "balance",
    "candle", "thunder", "pepper", "ribbon", "anchor", "velvet", "pebble", "maple", "whistle", "harvest",
    "marble", "feather", "canvas", "blossom", "cedar", "copper", "island", "ladder", "mirror", "orchard",
    "planet", "rocket", "saddle", "signal", "timber", "tunnel", "valley", "bridge", "cotton", "engine",
    "forest", "kitchen", "magnet", "ocean", "puppet", "rhythm", "season", "umbrella", "violet", "walnut",
    "yellow", "gentle", "patience", "promise", "sunrise", "cheerful", "careful", "moment", "energy", "honest",
)  # fmt: skip
FREQUENCY_WORDS: tuple[str, ...] = (
    "light", "time", "home", "friend", "water", "smile", "story", "today", "together", "simple",
    "little", "bright", "warm", "plan", "idea", "family", "hope", "small", "calm", "world",
)  # fmt: skip
FORBIDDEN_WORDS: tuple[str, ...] = (
    "very", "really", "good", "great", "important", "thing", "nice", "also", "just", "many",
    "best", "make", "people", "like", "always", "love", "perfect", "amazing", "easy", "fun",
)  # fmt: skip
FIRST_WORDS: tuple[str, ...] = (
    "first", "today", "however", "finally", "meanwhile", "later", "overall", "sometimes", "imagine",
    "luckily", "instead", "still", "once", "after", "because", "while", "yesterday", "honestly",
)  # fmt: skip
END_PHRASES: tuple[str, ...] = (
    "That is all for now.", "Thanks for reading!", "Hope this helps.", "See you soon!", "Have a lovely day!",
    "Stay curious!", "Take care.", "Until we meet again!", "The end.", "Let me know what you think.",
    "Write back soon.", "Cheers!", "Over and out.", "Talk soon!", "Warm wishes to all.",
)  # fmt: skip
TITLE_EXAMPLES: tuple[str, ...] = (
    "a still morning", "notes from the harbour", "small steps", "the long road home", "bread and honey",
    "under the old oak", "a letter in the rain", "the blue door",
)  # fmt: skip
PLACEHOLDER_EXAMPLES: tuple[str, ...] = ("[date]", "[city]", "[your name]", "[phone number]", "[price]")
SECTION_MARKERS: tuple[str, ...] = ("Section", "SECTION", "Part", "PART")
POSTSCRIPT_MARKERS: tuple[str, ...] = ("P.S.", "P.S.", "P.S.", "P.P.S")  # P.S. three times as often
# ISO 639-1 codes as langdetect names them; languages a small chat model has seen some of
LANGUAGES: dict[str, str] = {
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
}
COMMON_LETTERS = "aeiostnrl"  # "at least N times": letters any answer of some length has
RARE_LETTERS = "jqxz"  # "fewer than N times": letters an answer can do without

Sampler = Callable[[random.Random, set[str]], dict[str, Any]]


def _pick_words(rng: random.Random, words: tuple[str, ...], count: int, used: set[str]) -> list[str]:
    """``count`` different words from ``words`` not in ``used``; they are added to ``used``."""
    picked = rng.sample([w for w in words if w not in used], count)
    used.update(picked)
    return picked


def _relation(rng: random.Random, at_least_share: float) -> str:
    return AT_LEAST if rng.random() < at_least_share else LESS_THAN


def keywords_existence(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """One or two keywords to include."""
    return {"keywords": _pick_words(rng, KEYWORDS, rng.choice((1, 2, 2)), used)}


def keyword_frequency(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """A common word at least 2-4 times (mostly), or fewer than 2-3 times."""
    keyword = _pick_words(rng, FREQUENCY_WORDS, 1, used)[0]
    relation = _relation(rng, 0.8)
    frequency = rng.randint(2, 4) if relation == AT_LEAST else rng.randint(2, 3)
    return {"keyword": keyword, "frequency": frequency, "relation": relation}


def forbidden_words(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """One to three filler words not to use."""
    return {"forbidden_words": _pick_words(rng, FORBIDDEN_WORDS, rng.randint(1, 3), used)}


def letter_frequency(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """A common letter at least 5-15 times, or a rare one fewer than 3-6 times."""
    if rng.random() < 0.7:
        return {
            "letter": rng.choice(COMMON_LETTERS),
            "let_frequency": rng.randint(5, 15),
            "let_relation": AT_LEAST,
        }
    return {"letter": rng.choice(RARE_LETTERS), "let_frequency": rng.randint(3, 6), "let_relation": LESS_THAN}


def response_language(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"language": rng.choice(sorted(LANGUAGES))}


def number_sentences(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """At least 3-8 sentences, or fewer than 3-8."""
    return {"num_sentences": rng.randint(3, 8), "relation": _relation(rng, 0.5)}


def number_paragraphs(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"num_paragraphs": rng.randint(2, 4)}


def number_words(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """At least 40-120 words, or fewer than 30-150, in steps of 10."""
    if rng.random() < 0.5:
        return {"num_words": rng.randrange(40, 130, 10), "relation": AT_LEAST}
    return {"num_words": rng.randrange(30, 160, 10), "relation": LESS_THAN}


def nth_paragraph_first_word(rng: random.Random, used: set[str]) -> dict[str, Any]:
    paragraphs = rng.randint(2, 4)
    word = _pick_words(rng, FIRST_WORDS, 1, used)[0]
    return {"num_paragraphs": paragraphs, "nth_paragraph": rng.randint(1, paragraphs), "first_word": word}


def number_placeholders(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"num_placeholders": rng.randint(1, 4)}


def postscript(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"postscript_marker": rng.choice(POSTSCRIPT_MARKERS)}


def number_bullet_lists(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"num_bullets": rng.randint(2, 5)}


def number_highlighted_sections(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"num_highlights": rng.randint(1, 4)}


def multiple_sections(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"section_spliter": rng.choice(SECTION_MARKERS), "num_sections": rng.randint(2, 4)}


def end_checker(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {"end_phrase": rng.choice(END_PHRASES)}


def capital_word_frequency(rng: random.Random, used: set[str]) -> dict[str, Any]:
    """At least 2-8 all-capital words (mostly), or fewer than 3-6."""
    relation = _relation(rng, 0.6)
    frequency = rng.randint(2, 8) if relation == AT_LEAST else rng.randint(3, 6)
    return {"capital_frequency": frequency, "capital_relation": relation}


def no_arguments(rng: random.Random, used: set[str]) -> dict[str, Any]:
    return {}


SAMPLERS: dict[str, Sampler] = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keyword_frequency,
    "keywords:forbidden_words": forbidden_words,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_words": number_words,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:constrained_response": no_arguments,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": no_arguments,
    "detectable_format:title": no_arguments,
    "combination:two_responses": no_arguments,
    "combination:repeat_prompt": no_arguments,  # prompt_to_repeat is the base task, set by the builder
    "startend:end_checker": end_checker,
    "startend:quotation": no_arguments,
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": no_arguments,
    "change_case:english_lowercase": no_arguments,
    "punctuation:no_comma": no_arguments,
}


def sample_kwargs(instruction_id: str, rng: random.Random, used: set[str]) -> dict[str, Any]:
    """The kwargs object of one instruction; words it picks join ``used`` so the record repeats none."""
    return SAMPLERS[instruction_id](rng, used)


__all__ = [
    "AT_LEAST",
    "END_PHRASES",
    "FIRST_WORDS",
    "FORBIDDEN_WORDS",
    "FREQUENCY_WORDS",
    "KEYWORDS",
    "LANGUAGES",
    "LESS_THAN",
    "RARE_LETTERS",
    "SAMPLERS",
    "sample_kwargs",
]
