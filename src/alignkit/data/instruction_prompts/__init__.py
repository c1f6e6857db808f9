"""Training prompts for instruction following: tasks of ours with instructions of IFEval's 25 types attached.

IFEval (Zhou et al. 2023, arXiv:2311.07911) measures whether a model follows verifiable instructions
("no commas", "at least 3 bullet points", "end with ..."). Training on IFEval's own 541 prompts would
measure nothing, so this set is built here from parts written for alignkit:

- `tasks`: 423 base tasks (emails, stories, poems, explanations, advice, reviews, recipes, ... and
  yes/no questions), one sentence each;
- `phrasings`: several wordings of each instruction type;
- `arguments`: each type's kwargs, drawn from ranges like IFEval's and word lists of ours;
- `catalogue`: each type's weight and the one rule that keeps the 1-3 instructions of a prompt compatible;
- `build`: `build_instruction_prompts(count, seed)` and the writer behind ``alignkit data instructions``.

Each record has IFEval's columns (``key``, ``prompt``, ``instruction_id_list``, ``kwargs``), so
``alignkit grpo --reward-fn ifeval`` scores answers to it as ``alignkit eval instructions`` scores IFEval.
"""

from __future__ import annotations

from alignkit.data.instruction_prompts.build import (
    InstructionPromptsConfig,
    build_instruction_prompts,
    build_record,
    to_jsonl,
    write_instruction_prompts,
)
from alignkit.data.instruction_prompts.catalogue import TYPES, compatible

__all__ = [
    "TYPES",
    "InstructionPromptsConfig",
    "build_instruction_prompts",
    "build_record",
    "compatible",
    "to_jsonl",
    "write_instruction_prompts",
]
