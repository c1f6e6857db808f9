"""Judges as a reward source: the answers to one prompt compared with each other, a win rate per answer.

A pairwise judge (`alignkit.feedback.judges`: a local LM, an OpenAI-compatible endpoint) says which of two
answers is better; online RL needs a number per answer. :class:`JudgeScorer` makes one the way pairwise
reward models are used for many candidates (a round robin inside each group, the way LLM-Blender's
PairRanker turns pairwise comparisons into a ranking, Jiang et al. 2023, arXiv:2306.02561; AI feedback as
the reward, RLAIF, Lee et al. 2023, arXiv:2309.00267):

    r_i = (1 / (n - 1)) Σ_{j ≠ i} P(i beats j)

over the other answers j to the same prompt, P from the judge's probability of the first-shown name when
it gives one (local models and endpoints with log-probs), else 1 / 0 / 0.5 for a win, a loss or a tie; with
``swap`` each pair is judged in both orders and the two averaged (position bias cancels). A pair without
a decision (an unparsed reply) is left out; an answer with no decided pair gets no reward (NaN, as a
reward function's None). Cost: n (n - 1) / 2 judgements per prompt (x 2 with swap): 28 for a group of 8.

An answer alone (evaluation samples one answer per prompt) is compared with the record's ``reference``
column when there is one, else it gets no reward. The simulated annotator (``simulated``) is pointwise:
its rule's score is the reward directly (`feedback.judges.simulated.simulated_score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Conversation
from alignkit.feedback.judges.base import Judge, JudgeInput, Verdict, conversation_text
from alignkit.rewards.ensemble import RewardMember


def _p_first(verdict: Verdict) -> float | None:
    """P(the first-shown answer is better) from one verdict; None without a decision."""
    if verdict.problem:
        return None
    if verdict.first is not None and math.isfinite(verdict.first):
        return float(verdict.first)
    if verdict.winner is None:
        return 0.5  # a tie
    return 1.0 if verdict.winner == 0 else 0.0


@dataclass
class JudgeScorer:
    """A pairwise judge as a `RewardSet` member: each answer's win rate against the others in its group."""

    judge: Judge
    swap: bool = True
    tokenizer: Any = None  # text only
    takes_columns: bool = True
    takes_groups: bool = True
    abstains: bool = True  # an answer without a decided pair gets NaN

    def score_text(
        self,
        prompts: Sequence[Conversation | str],
        responses: Sequence[Conversation | str],
        columns: Mapping[str, Any] | None = None,
        groups: Sequence[int] | None = None,
    ) -> Tensor:
        texts = [conversation_text(p, "user") if not isinstance(p, str) else p for p in prompts]
        answers = [r if isinstance(r, str) else conversation_text(r, "assistant") for r in responses]
        group_ids = list(groups) if groups is not None else list(range(len(answers)))
        members: dict[int, list[int]] = {}
        for row, g in enumerate(group_ids):
            members.setdefault(g, []).append(row)
        references = list((columns or {}).get("reference") or [None] * len(answers))
        pairs: list[tuple[int, int | None, str]] = []  # (row, other row or None for the reference, its text)
        for rows in members.values():
            if len(rows) > 1:
                pairs += [(i, j, answers[j]) for i, j in combinations(rows, 2)]
            elif isinstance(references[rows[0]], str) and references[rows[0]].strip():
                pairs.append((rows[0], None, references[rows[0]]))
        wins: list[list[float]] = [[] for _ in answers]
        for (i, j, _), p in zip(pairs, self._judge(texts, answers, pairs), strict=True):
            if p is None:
                continue
            wins[i].append(p)
            if j is not None:
                wins[j].append(1.0 - p)
        return torch.tensor([sum(w) / len(w) if w else math.nan for w in wins], dtype=torch.float32)

    def _judge(
        self, texts: list[str], answers: list[str], pairs: list[tuple[int, int | None, str]]
    ) -> list[float | None]:
        """P(the pair's first answer is better) for each pair, both orders averaged with ``swap``."""
        forward = [JudgeInput(texts[i], answers[i], other) for i, _, other in pairs]
        verdicts = self.judge.judge(forward) if forward else []
        out = [_p_first(v) for v in verdicts]
        if not self.swap or not forward:
            return out
        backward = self.judge.judge([JudgeInput(x.prompt, x.answer_b, x.answer_a) for x in forward])
        both = []
        for p, v in zip(out, backward, strict=True):
            q = _p_first(v)
            both.append(None if p is None or q is None else (p + (1.0 - q)) / 2)
        return both


@dataclass
class SimulatedScorer:
    """The simulated annotator's rule (`feedback.judges.simulated`) as a pointwise reward."""

    tokenizer: Any = None

    def score_text(
        self, prompts: Sequence[Conversation | str], responses: Sequence[Conversation | str]
    ) -> Tensor:
        from alignkit.feedback.judges.simulated import simulated_scores

        texts = [p if isinstance(p, str) else conversation_text(p, "user") for p in prompts]
        answers = [r if isinstance(r, str) else conversation_text(r, "assistant") for r in responses]
        return torch.tensor(simulated_scores(texts, answers), dtype=torch.float32)


def judge_member(judge: Judge | None, name: str, weight: float = 1.0, swap: bool = True) -> RewardMember:
    """A `RewardMember` scoring with ``judge`` (None: the simulated annotator's pointwise rule)."""
    scorer: Any = SimulatedScorer() if judge is None else JudgeScorer(judge, swap=swap)
    return RewardMember(name, scorer, float(weight))


__all__ = ["JudgeScorer", "SimulatedScorer", "judge_member"]
