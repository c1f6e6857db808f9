"""Judging answers: per instruction strict and loose, per prompt all-followed, IFEval's four accuracies.

Strict (Zhou et al. 2023, sec. 3): an instruction is followed when the answer is not blank and its check
passes on the answer as given. Loose: when the check passes on any non-blank one of eight variants of
the answer (`loose_variants`): the answer itself, without its first line, without its last line, without
both, and each of those four with every ``*`` removed (markdown emphasis). A prompt is followed when all
its instructions are. The four accuracies:

- ``prompt_strict`` / ``prompt_loose``: the fraction of prompts whose instructions are all followed;
- ``inst_strict`` / ``inst_loose``: the fraction of all instructions (over every prompt) followed.

`ifeval_reward` is the reward function (TRL's signature) behind ``--reward-fn ifeval``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.errors import ConfigError
from alignkit.rewards.verifiers.ifeval.registry import InstructionType, instruction_args, instruction_type


@dataclass(frozen=True)
class Judgement:
    """One answer judged against its prompt's instructions (``strict[i]``, ``loose[i]`` for instruction i)."""

    instruction_ids: tuple[str, ...]
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]

    @property
    def all_strict(self) -> bool:
        return all(self.strict)

    @property
    def all_loose(self) -> bool:
        return all(self.loose)


def loose_variants(response: str) -> list[str]:
    """The eight answers the loose score tries (the reference's order; the first is the answer itself)."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def parse_instructions(instruction_ids: Any, kwargs: Any) -> list[tuple[InstructionType, dict[str, Any]]]:
    """A record's ``instruction_id_list`` and ``kwargs`` → (type, arguments) per instruction.

    Either may be a JSON string (a CSV column); ``kwargs`` may be missing (no instruction then takes
    arguments) but otherwise has one object per instruction. Errors are `ConfigError`s.
    """
    ids = _json_list(instruction_ids, "instruction_id_list")
    objects = [None] * len(ids) if kwargs is None else _json_list(kwargs, "kwargs")
    if len(objects) != len(ids):
        raise ConfigError(
            f"ifeval: {len(ids)} instructions but {len(objects)} kwargs objects; give one object per instruction"
        )
    out = []
    for name, obj in zip(ids, objects, strict=True):
        kind = instruction_type(name)
        out.append((kind, instruction_args(kind, obj)))
    return out


def _json_list(value: Any, column: str) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"ifeval: {column} is text that is not a JSON list: {value[:80]!r}") from None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"ifeval: {column} must be a list, got {type(value).__name__}")
    return list(value)


def judge(response: str, instructions: Sequence[tuple[InstructionType, dict[str, Any]]]) -> Judgement:
    """Strict and loose verdicts of ``response`` on each parsed instruction (`parse_instructions`)."""
    others = [v for v in loose_variants(response)[1:] if v.strip()]
    strict, loose = [], []
    for kind, args in instructions:
        followed = bool(response.strip()) and kind.check(response, **args)
        strict.append(followed)
        loose.append(followed or any(kind.check(v, **args) for v in others))
    return Judgement(tuple(k.id for k, _ in instructions), tuple(strict), tuple(loose))


def judge_record(response: str, instruction_ids: Any, kwargs: Any) -> Judgement:
    """`judge` straight from a record's ``instruction_id_list`` and ``kwargs`` columns."""
    return judge(response, parse_instructions(instruction_ids, kwargs))


def accuracies(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """IFEval's four accuracies over ``judgements`` (one per prompt), the counts, and per type
    ``by_type[id] = {"instructions": n, "strict": fraction, "loose": fraction}``, sorted by id."""
    counts: dict[str, list[int]] = {}
    for j in judgements:
        for name, s, lo in zip(j.instruction_ids, j.strict, j.loose, strict=True):
            row = counts.setdefault(name, [0, 0, 0])
            row[0], row[1], row[2] = row[0] + 1, row[1] + s, row[2] + lo
    n_inst = sum(c[0] for c in counts.values())

    def share(part: float, whole: int) -> float | None:
        return part / whole if whole else None

    return {
        "prompt_strict": share(sum(j.all_strict for j in judgements), len(judgements)),
        "inst_strict": share(sum(c[1] for c in counts.values()), n_inst),
        "prompt_loose": share(sum(j.all_loose for j in judgements), len(judgements)),
        "inst_loose": share(sum(c[2] for c in counts.values()), n_inst),
        "prompts": len(judgements),
        "instructions": n_inst,
        "by_type": {
            name: {"instructions": c[0], "strict": c[1] / c[0], "loose": c[2] / c[0]}
            for name, c in sorted(counts.items())
        },
    }


def ifeval_reward(
    prompts: list[Any] | None = None,
    completions: list[Any] | None = None,
    instruction_id_list: Sequence[Any] | None = None,
    kwargs: Sequence[Any] | None = None,
    **_: Any,
) -> list[float | None]:
    """Per completion, the fraction of its record's instructions it follows (strict); None when the record
    has no instructions (no ``instruction_id_list``, or an empty one)."""
    completions = list(completions or [])
    out: list[float | None] = []
    for i, completion in enumerate(completions):
        ids = _row(instruction_id_list, i)
        if ids is None or (isinstance(ids, (list, tuple)) and not ids) or ids == "[]":
            out.append(None)
            continue
        verdict = judge_record(_text(completion), ids, _row(kwargs, i))
        out.append(sum(verdict.strict) / len(verdict.strict))
    return out


def _row(column: Sequence[Any] | None, i: int) -> Any:
    return None if column is None else column[i]


def _text(completion: Any) -> str:
    """A completion as text; TRL's conversational form (a list of messages) gives its last content."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    return str(completion)


__all__ = [
    "Judgement",
    "accuracies",
    "ifeval_reward",
    "judge",
    "judge_record",
    "loose_variants",
    "parse_instructions",
]
