"""IFEval's 25 instruction types as the prompt builder sees them: how often each is drawn, and which go together.

**Weights.** Types a small model can learn to follow from a reward (no commas, lower case, an end
phrase, a title, a postscript, a keyword, a word limit) are drawn most; types that need a skill the model
hardly has (answering in another language, counting letters or capital words, repeating the request)
least, but every type is drawn.

**Compatibility: one rule.** Each type *claims* the aspects of the answer it fixes (its case, its layout,
how it opens, how it closes, how it is wrapped, its length, its use of star markup), carries *marks*
(``english``: it needs English words; ``text``: it needs prose outside any JSON; ``mixed_case``: it needs
a capital and a small letter; ``task_words``: it limits words or characters a repeated request may
contain; ``letters``: it counts letters), and *excludes* some marks. Two types go together when they
claim no aspect in common and neither excludes a mark or claim of the other. So: one case rule, one
layout, one length rule; JSON only with rules that hold inside JSON; another language with nothing that
needs English words or counts letters; lower or upper case with nothing that needs "My answer is yes."
or "SECTION 1" in another case; repeating the request with nothing the request itself could break
(commas, forbidden words, letter or capital counts).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TypeSpec:
    """How often a type is drawn (relative weight), and what it claims, carries and excludes."""

    weight: int
    claims: frozenset[str] = field(default_factory=frozenset)
    marks: frozenset[str] = field(default_factory=frozenset)
    excludes: frozenset[str] = field(default_factory=frozenset)


def _spec(weight: int, claims: str = "", marks: str = "", excludes: str = "") -> TypeSpec:
    return TypeSpec(weight, frozenset(claims.split()), frozenset(marks.split()), frozenset(excludes.split()))


TYPES: dict[str, TypeSpec] = {
    "punctuation:no_comma": _spec(8, marks="text task_words"),
    "change_case:english_lowercase": _spec(7, "case", "english", excludes="mixed_case"),
    "startend:end_checker": _spec(7, "closing", "text english"),
    "detectable_content:postscript": _spec(7, marks="text"),
    "detectable_format:title": _spec(7, marks="text"),
    "keywords:existence": _spec(7, marks="english"),
    "length_constraints:number_words": _spec(7, "length"),
    "startend:quotation": _spec(6, "opening wrap", "text"),
    "change_case:english_capital": _spec(5, "case", "english", excludes="mixed_case"),
    "keywords:forbidden_words": _spec(5, marks="task_words"),
    "keywords:frequency": _spec(5, marks="english"),
    "detectable_content:number_placeholders": _spec(5),
    "detectable_format:number_bullet_lists": _spec(5, "stars", "text"),
    "detectable_format:number_highlighted_sections": _spec(5, "stars", "text"),
    "detectable_format:constrained_response": _spec(4, marks="text english mixed_case"),
    "detectable_format:json_format": _spec(4, "layout opening closing wrap", excludes="text"),
    "length_constraints:number_sentences": _spec(4, "length", "text"),
    "length_constraints:number_paragraphs": _spec(4, "layout", "text"),
    "keywords:letter_frequency": _spec(3, marks="letters task_words"),
    "length_constraints:nth_paragraph_first_word": _spec(3, "layout opening", "text english"),
    "detectable_format:multiple_sections": _spec(3, "layout", "text mixed_case"),
    "combination:two_responses": _spec(3, "layout wrap", "text"),
    "combination:repeat_prompt": _spec(3, "opening", "text english", excludes="task_words"),
    "change_case:capital_word_frequency": _spec(3, "case", "task_words", excludes="mixed_case"),
    "language:response_language": _spec(2, "language", "text", excludes="english letters"),
}

# How many instructions a prompt gets (IFEval's prompts have 1.5 on average).
INSTRUCTION_COUNTS = (1, 2, 3)
COUNT_WEIGHTS = (45, 40, 15)


def compatible(a: str, b: str) -> bool:
    """Whether instruction types ``a`` and ``b`` can be asked of one answer (the rule in the module docstring)."""
    if a == b:
        return False
    sa, sb = TYPES[a], TYPES[b]
    if sa.claims & sb.claims:
        return False
    return not (sa.excludes & (sb.claims | sb.marks) or sb.excludes & (sa.claims | sa.marks))


def choose_types(rng: random.Random) -> list[str]:
    """1 to 3 mutually compatible types, each drawn by weight among those compatible with the ones before."""
    wanted = rng.choices(INSTRUCTION_COUNTS, weights=COUNT_WEIGHTS)[0]
    chosen: list[str] = []
    while len(chosen) < wanted:
        options = [t for t in TYPES if all(compatible(t, c) for c in chosen)]
        if not options:
            break
        chosen.append(rng.choices(options, weights=[TYPES[t].weight for t in options])[0])
    return chosen


__all__ = ["COUNT_WEIGHTS", "INSTRUCTION_COUNTS", "TYPES", "TypeSpec", "choose_types", "compatible"]
