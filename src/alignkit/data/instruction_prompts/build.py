"""Building the prompt set: base task + 1-3 compatible instructions per record, deterministic per (count, seed).

Record ``i`` of seed ``s`` depends on ``(s, i)`` alone (its own `random.Random`), so a shorter set is a
prefix of a longer one with the same seed. Base tasks are dealt from a shuffled deck of every task (one
shuffle per pass through the deck, seeded by ``s`` and the pass), so each is used about equally often;
a record with ``detectable_format:constrained_response`` takes a yes/no question instead.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.instruction_prompts.arguments import sample_kwargs
from alignkit.data.instruction_prompts.catalogue import choose_types
from alignkit.data.instruction_prompts.phrasings import describe
from alignkit.data.instruction_prompts.tasks import BASE_TASKS, YES_NO_TASKS
from alignkit.errors import ConfigError

DECK: tuple[str, ...] = BASE_TASKS + YES_NO_TASKS
YES_NO_ONLY = "detectable_format:constrained_response"
REPEAT = "combination:repeat_prompt"
# How the instructions follow the task: on the same line, on the next, or after a blank line.
SEPARATORS = (" ", " ", "\n", "\n\n")


@dataclass
class InstructionPromptsConfig:
    """`alignkit data instructions`: a prompt set for training instruction following (IFEval's types)."""

    output: str | None = None
    """JSONL file to write (required), one prompt per line: prompt, instruction_id_list, kwargs, key."""
    count: int = 2000
    """How many prompts to write."""
    seed: int = 0
    """Seed of the draw; the same count and seed always give the same file."""

    def validate(self) -> None:
        check_count_and_seed(self.count, self.seed)
        if not self.output:
            raise ConfigError("--output FILE is required (the JSONL file to write)")
        if Path(self.output).is_dir():
            raise ConfigError(f"--output {self.output} is a folder; give the path of the JSONL file to write")


def check_count_and_seed(count: Any, seed: Any) -> None:
    """A `ConfigError` unless ``count`` is a whole number >= 1 and ``seed`` one >= 0."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"--count must be a whole number >= 1, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")


@functools.lru_cache(maxsize=8)
def _deck_order(seed: int, round_: int) -> tuple[str, ...]:
    """The deck of tasks shuffled for pass ``round_`` of seed ``seed``."""
    order = list(DECK)
    random.Random(f"alignkit-instruction-tasks:{seed}:{round_}").shuffle(order)
    return tuple(order)


def _task(seed: int, index: int, types: list[str], rng: random.Random) -> str:
    if YES_NO_ONLY in types:
        return rng.choice(YES_NO_TASKS)
    return _deck_order(seed, index // len(DECK))[index % len(DECK)]


def build_record(seed: int, index: int) -> dict[str, Any]:
    """Record ``index`` of the set drawn with ``seed``: ``key``, ``prompt``, ``instruction_id_list``, ``kwargs``."""
    rng = random.Random(f"alignkit-instructions:{seed}:{index}")
    types = choose_types(rng)
    task = _task(seed, index, types, rng)
    used: set[str] = set()
    instructions = []
    for instruction_id in types:
        kwargs = sample_kwargs(instruction_id, rng, used)
        sentence = describe(instruction_id, kwargs, rng)
        if instruction_id == REPEAT:
            kwargs = {"prompt_to_repeat": task}
        instructions.append((instruction_id, kwargs, sentence))
    rng.shuffle(instructions)
    prompt = task + rng.choice(SEPARATORS) + " ".join(sentence for _, _, sentence in instructions)
    return {
        "key": f"alignkit-ifeval-s{seed}-{index:05d}",
        "prompt": prompt,
        "instruction_id_list": [i for i, _, _ in instructions],
        "kwargs": [k for _, k, _ in instructions],
    }


def build_instruction_prompts(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` training prompts drawn with ``seed`` (the same pair gives the same list; see the module)."""
    check_count_and_seed(count, seed)
    return [build_record(seed, i) for i in range(count)]


def to_jsonl(records: list[dict[str, Any]]) -> str:
    """The records as JSONL text, one object per line, in the order given (non-ASCII kept as is)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_instruction_prompts(cfg: InstructionPromptsConfig) -> tuple[Path, list[dict[str, Any]]]:
    """`alignkit data instructions`: write the set to ``cfg.output`` (atomically); returns the path and records."""
    from alignkit.files import atomic_write_text

    records = build_instruction_prompts(cfg.count, cfg.seed)
    path = Path(str(cfg.output))
    atomic_write_text(path, to_jsonl(records))
    return path, records


__all__ = [
    "InstructionPromptsConfig",
    "build_instruction_prompts",
    "build_record",
    "check_count_and_seed",
    "to_jsonl",
    "write_instruction_prompts",
]
