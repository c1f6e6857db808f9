"""IFEval's 25 instruction types by id, the arguments each takes, and the checks on a record's kwargs.

The ids and argument names are those of Google's IFEval data (``instruction_id_list`` and ``kwargs``,
one kwargs object per instruction). `instruction_args` turns one kwargs object into the arguments of
the check: None values are dropped first (the Hugging Face copy of IFEval gives every instruction every
key, mostly null; the reference drops them too), then every argument the type takes must be present and
of the right kind. The reference fills a missing argument with a random value; here it is a
`ConfigError` naming the instruction and the argument, since a reward must not be drawn at random.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alignkit.errors import ConfigError
from alignkit.rewards.verifiers.ifeval import instructions as ins


@dataclass(frozen=True)
class InstructionType:
    """One instruction type: its id, its check and the kinds of its arguments (all required)."""

    id: str
    check: Callable[..., bool]
    args: Mapping[str, str]  # name -> kind: int, positive, relation, text, raw, lower, words, letter


def _t(check: Callable[..., bool], **args: str) -> tuple[Callable[..., bool], dict[str, str]]:
    return check, args


_TYPES = {
    "keywords:existence": _t(ins.keyword_existence, keywords="words"),
    "keywords:frequency": _t(ins.keyword_frequency, keyword="text", frequency="int", relation="relation"),
    "keywords:forbidden_words": _t(ins.forbidden_words, forbidden_words="words"),
    "keywords:letter_frequency": _t(
        ins.letter_frequency, letter="letter", let_frequency="int", let_relation="relation"
    ),
    "language:response_language": _t(ins.response_language, language="text"),
    "length_constraints:number_sentences": _t(ins.number_sentences, num_sentences="int", relation="relation"),
    "length_constraints:number_paragraphs": _t(ins.number_paragraphs, num_paragraphs="int"),
    "length_constraints:number_words": _t(ins.number_words, num_words="int", relation="relation"),
    "length_constraints:nth_paragraph_first_word": _t(
        ins.nth_paragraph_first_word, num_paragraphs="int", nth_paragraph="positive", first_word="lower"
    ),
    "detectable_content:number_placeholders": _t(ins.number_placeholders, num_placeholders="int"),
    "detectable_content:postscript": _t(ins.postscript, postscript_marker="text"),
    "detectable_format:number_bullet_lists": _t(ins.number_bullet_lists, num_bullets="int"),
    "detectable_format:constrained_response": _t(ins.constrained_response),
    "detectable_format:number_highlighted_sections": _t(
        ins.number_highlighted_sections, num_highlights="int"
    ),
    "detectable_format:multiple_sections": _t(
        ins.multiple_sections, section_spliter="text", num_sections="int"
    ),
    "detectable_format:json_format": _t(ins.json_format),
    "detectable_format:title": _t(ins.title),
    "combination:two_responses": _t(ins.two_responses),
    "combination:repeat_prompt": _t(ins.repeat_prompt, prompt_to_repeat="raw"),
    "startend:end_checker": _t(ins.end_checker, end_phrase="text"),
    "startend:quotation": _t(ins.quotation),
    "change_case:capital_word_frequency": _t(
        ins.capital_word_frequency, capital_frequency="int", capital_relation="relation"
    ),
    "change_case:english_capital": _t(ins.english_capital),
    "change_case:english_lowercase": _t(ins.english_lowercase),
    "punctuation:no_comma": _t(ins.no_comma),
}

INSTRUCTIONS: dict[str, InstructionType] = {
    name: InstructionType(name, check, args) for name, (check, args) in _TYPES.items()
}


def instruction_type(instruction_id: str) -> InstructionType:
    """The type named ``instruction_id``; a `ConfigError` listing the ids for an unknown one."""
    found = INSTRUCTIONS.get(str(instruction_id).strip())
    if found is None:
        raise ConfigError(
            f"ifeval: unknown instruction {instruction_id!r}; IFEval's types are {', '.join(INSTRUCTIONS)}"
        )
    return found


def instruction_args(instruction: InstructionType, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's kwargs object for one instruction → the check's arguments (see the module docstring)."""
    if not isinstance(kwargs, (Mapping, type(None))):
        raise ConfigError(f"ifeval: kwargs of {instruction.id} must be an object, got {kwargs!r:.80}")
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    unknown = sorted(set(given) - set(instruction.args))
    if unknown:
        takes = ", ".join(instruction.args) or "no arguments"
        raise ConfigError(f"ifeval: {instruction.id} does not take {', '.join(unknown)} (it takes {takes})")
    out: dict[str, Any] = {}
    for name, kind in instruction.args.items():
        if name not in given:
            raise ConfigError(f"ifeval: {instruction.id} needs the argument {name!r} in its kwargs")
        out[name] = _convert(instruction.id, name, kind, given[name])
    return out


def _convert(instruction: str, name: str, kind: str, value: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"ifeval: {instruction} {name} must be {expected}, got {value!r:.80}")

    if kind in ("int", "positive"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad("a whole number")
        try:
            number = float(value)
        except ValueError:
            raise bad("a whole number") from None
        if not number.is_integer() or number < (1 if kind == "positive" else 0):
            raise bad("a whole number" + (" >= 1" if kind == "positive" else " >= 0"))
        return int(number)
    if kind == "words":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items or not all(isinstance(w, str) for w in items):
            raise bad("a list of words")
        return list(items)
    if not isinstance(value, str) or not value.strip():
        raise bad("a non-empty text")
    if kind == "relation":
        if value not in ins.RELATIONS:
            raise bad(" or ".join(repr(r) for r in ins.RELATIONS))
        return value
    if kind == "letter":
        if len(value.strip()) != 1:
            raise bad("one character")
        return value.strip().lower()
    if kind == "lower":
        return value.lower()
    return value if kind == "raw" else value.strip()


__all__ = ["INSTRUCTIONS", "InstructionType", "instruction_args", "instruction_type"]
