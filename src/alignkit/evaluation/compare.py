"""Compare two sets of answers to the same prompts: win rate, reward, length, repetition, habits.

Pure functions over texts and scores, shared by `alignkit eval policy` (a policy against its reference) and
`alignkit demo` (best-of-n, DPO and PPO against the base). Win rates pair the i-th answer of each side to
the same prompt; a tie counts half (AlpacaEval's convention, Li et al. 2023; Dubois et al. 2024). Several
answers to one prompt are not independent: `win_summary` takes the mean of per-prompt means and its
standard error over prompts (prompts as clusters; with several samples of one question, Miller 2024,
"Adding Error Bars to Evals", arXiv:2411.00640, analyse the per-question means). A judge verdict that could
not be parsed is dropped and counted, not scored as a tie.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alignkit import watch

Scores = Callable[[Sequence[str], Sequence[str], Sequence[bool]], list[float]]
"""(prompt texts, answer texts, finished flags) -> one score per answer."""


@dataclass
class PointScorer:
    """A named pointwise scorer: a reward model (set) or the simulated annotator."""

    name: str
    score: Scores
    last_per_model: dict[str, float] | None = (
        None  # a reward set: each model's mean raw score in the last call
    )


def win_from_scores(policy: Sequence[float], reference: Sequence[float], eps: float = 1e-6) -> list[float]:
    """1 where the policy's answer scores higher, 0 lower, 0.5 within ``eps`` (a tie)."""
    if len(policy) != len(reference):
        raise ValueError(f"{len(policy)} policy scores but {len(reference)} reference scores")
    return [0.5 if abs(p - r) <= eps else float(p > r) for p, r in zip(policy, reference, strict=True)]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def std(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return 0.0 if values else None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def stderr(values: Sequence[float]) -> float | None:
    s = std(values)
    return None if s is None or not values else s / math.sqrt(len(values))


def cluster_means(values: Sequence[float | None], clusters: Sequence[int] | None = None) -> list[float]:
    """The mean of each cluster's values (None values left out; a cluster with none left is dropped).

    ``clusters``: one id per value (e.g. the prompt each answer answers); None: every value its own cluster.
    """
    ids = range(len(values)) if clusters is None else clusters
    if len(ids) != len(values):
        raise ValueError(f"{len(values)} values but {len(ids)} cluster ids")
    groups: dict[int, list[float]] = {}
    for value, cluster in zip(values, ids, strict=True):
        if value is not None:
            groups.setdefault(cluster, []).append(value)
    return [sum(g) / len(g) for g in groups.values()]


def win_summary(wins: Sequence[float | None], clusters: Sequence[int] | None = None) -> dict[str, Any]:
    """Win rate and its standard error, clustered by prompt, and how many verdicts were unparsed (None).

    ``win_rate`` = the mean over prompts of each prompt's mean win (the plain mean when every prompt has
    as many answers); ``win_rate_stderr`` = the std of those per-prompt means / sqrt(prompts).
    """
    means = cluster_means(wins, clusters)
    return {
        "win_rate": mean(means),
        "win_rate_stderr": stderr(means),
        "judged": sum(w is not None for w in wins),
        "unparsed": sum(w is None for w in wins),
    }


def judge_wins(
    judge: Any,
    prompts: Sequence[str],
    policy: Sequence[str],
    reference: Sequence[str],
    seed: int = 0,
    swap: bool = True,
) -> list[float | None]:
    """Win of each policy answer over the reference answer by a pairwise judge (`feedback.judge.Judge`).

    Which answer is shown first is drawn per pair from ``seed``; with ``swap`` every pair is judged in both
    orders and a verdict that follows the position becomes a tie (Zheng et al. 2023, sec. 3.3). None where
    a verdict (either order) could not be parsed: that pair has no outcome, it is not a tie.
    """
    from alignkit.feedback.judges.base import JudgeInput, combine

    rng = random.Random(seed)
    policy_first = [rng.random() < 0.5 for _ in prompts]
    inputs = [
        JudgeInput(p, a, b) if first else JudgeInput(p, b, a)
        for p, a, b, first in zip(prompts, policy, reference, policy_first, strict=True)
    ]
    if swap:
        inputs += [JudgeInput(i.prompt, i.answer_b, i.answer_a) for i in inputs]
    verdicts = judge.judge(inputs)
    wins = []
    for k, first in enumerate(policy_first):
        outcome = combine(verdicts[k], verdicts[len(prompts) + k] if swap else None, "tie")
        if outcome.event == "skip":  # unparsed: no verdict at all
            wins.append(None)
        elif outcome.winner is None:
            wins.append(0.5)
        else:
            wins.append(float((outcome.winner == 0) == first))
    return wins


def answer_stats(texts: Sequence[str], token_ids: Sequence[Sequence[int]], finished: Sequence[bool]) -> dict:
    """Length (tokens), the share cut at the length limit, repetition and the habit rates of a set of answers."""
    from alignkit.habits.rates import habit_rates

    lengths = [len(t) for t in token_ids]
    return {
        "mean_length": mean(lengths),
        "truncated": watch.truncated_fraction(finished),
        "repetition": watch.repetition_rate(token_ids),
        "distinct_2": watch.distinct_n(token_ids, 2),
        "habits": habit_rates(texts),
    }


def score_summary(
    name: str, policy: Sequence[float], reference: Sequence[float], clusters: Sequence[int] | None = None
) -> dict[str, Any]:
    """Mean and spread of both sides' scores, and the policy's win rate by them (`win_summary`: its
    standard error clustered by ``clusters``, the prompt of each answer)."""
    wins = win_summary(win_from_scores(policy, reference), clusters)
    return {
        "scorer": name,
        "mean": mean(policy),
        "std": std(policy),
        "reference_mean": mean(reference),
        "reference_std": std(reference),
        "win_rate": wins["win_rate"],
        "win_rate_stderr": wins["win_rate_stderr"],
    }
