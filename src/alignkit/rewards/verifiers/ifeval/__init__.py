"""The ``ifeval`` verifier: IFEval's instruction-following checks (Zhou et al. 2023, arXiv:2311.07911).

A record names its instructions in ``instruction_id_list`` (e.g. ``punctuation:no_comma``) with one
``kwargs`` object each (e.g. ``{"num_words": 300, "relation": "at least"}``), as IFEval's data does. All
25 instruction types of Google's checker are here, with its semantics (docs/rewards.md lists where ours
differ and why):

- `instructions`: one check per type, ``check(response, **args) -> bool``;
- `registry`: the types by id, their arguments, and the checks on a record's kwargs;
- `text`: words, sentences (a documented regex split, not nltk's punkt), word tokens, language (langdetect);
- `score`: strict and loose verdicts per instruction, per prompt, IFEval's four accuracies, and
  `ifeval_reward`, the reward function (TRL's signature; ``--reward-fn ifeval``).
"""

from __future__ import annotations

from alignkit.rewards.verifiers.ifeval.registry import INSTRUCTIONS, InstructionType
from alignkit.rewards.verifiers.ifeval.score import (
    Judgement,
    accuracies,
    ifeval_reward,
    judge,
    judge_record,
    loose_variants,
    parse_instructions,
)

__all__ = [
    "INSTRUCTIONS",
    "InstructionType",
    "Judgement",
    "accuracies",
    "ifeval_reward",
    "judge",
    "judge_record",
    "loose_variants",
    "parse_instructions",
]
