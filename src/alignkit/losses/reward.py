"""Reward-model losses: Bradley-Terry pairs, K-way rankings, reward centering.

Notation
--------
B        number of preference pairs in the batch
N        number of scored answers in the batch (each answer forwarded once)
P        number of (better, worse) pairs gathered from those N scores
r_c      score of the chosen (preferred) answer, ``chosen_scores`` (B,)
r_r      score of the rejected answer, ``rejected_scores`` (B,)
m        optional required margin, ``margin`` (B,)
w        optional per-pair weight, ``weights`` (B,)
σ        the logistic sigmoid, σ(z) = 1 / (1 + e^-z)

The Bradley-Terry model (Bradley & Terry 1952) says P(c ≻ r) = σ(r_c - r_r); a reward
model is fitted by maximum likelihood on human comparisons (Ziegler et al. 2019,
sec. 2.2; Stiennon et al. 2020, sec. 3.4; Ouyang et al. 2022, sec. 3.5).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "batch_ranking_pairs",
    "bradley_terry_loss",
    "centering_loss",
    "ranking_loss",
    "ranking_pairs",
]


def _weighted_mean(x: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of ``x`` (B,), or sum(w * x) / sum(w) when ``weights`` (B,) is given (0 if sum(w) == 0)."""
    if weights is None:
        return x.mean()
    weights = weights.to(x.dtype)
    return (weights * x).sum() / weights.sum().clamp_min(torch.finfo(x.dtype).tiny)


def _check_pairs(name: str, t: Tensor | None, like: Tensor) -> None:
    if t is not None and t.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(like.shape)}")


def bradley_terry_loss(
    chosen_scores: Tensor,
    rejected_scores: Tensor,
    margin: Tensor | None = None,
    weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Pairwise reward-model loss: the negative log-likelihood of the Bradley-Terry model.

    Equation (Ouyang et al. 2022, sec. 3.5, eq. 1; margin from Touvron et al. 2023, Llama 2, sec. 3.2.2)::

        loss = mean_b  -log σ(r_c[b] - r_r[b] - m[b])

    computed as ``-logsigmoid(...)``, which is exact for large |z| where
    ``log(sigmoid(z))`` would round to log(0). A positive margin asks the chosen
    answer to win by at least ``m`` before the loss flattens (Llama 2 uses a larger
    margin for pairs the labellers called "significantly better").

    With ``weights`` the mean becomes ``sum(w * l) / sum(w)``. Give the C pairs of
    one K-way ranking weight 1/C each and every ranking counts as one comparison,
    as InstructGPT does to avoid over-fitting to prompts with many answers
    (Ouyang et al. 2022, sec. 3.5). See :func:`batch_ranking_pairs`.

    Worked example: r_c = 1, r_r = 0, no margin ->
    -log σ(1) = -log(1 / (1 + e^-1)) = log(1 + e^-1) ≈ 0.31326.

    Args:
        chosen_scores: (B,) scalar reward of each chosen answer.
        rejected_scores: (B,) scalar reward of each rejected answer.
        margin: (B,) or None; required gap, subtracted inside the sigmoid.
        weights: (B,) or None; non-negative weight of each pair.

    Returns:
        loss: 0-d tensor.
        stats (detached, weighted like the loss): ``reward/accuracy`` (fraction with
        r_c > r_r, a tie counting one half; the margin is not used here),
        ``reward/margin`` (mean r_c - r_r), ``reward/chosen``, ``reward/rejected`` (mean scores).
    """
    if chosen_scores.dim() != 1:
        raise ValueError(f"chosen_scores must be (B,), got shape {tuple(chosen_scores.shape)}")
    _check_pairs("rejected_scores", rejected_scores, chosen_scores)
    _check_pairs("margin", margin, chosen_scores)
    _check_pairs("weights", weights, chosen_scores)

    gap = chosen_scores - rejected_scores  # (B,)
    logits = gap if margin is None else gap - margin.to(gap.dtype)
    loss = _weighted_mean(-F.logsigmoid(logits), weights)

    with torch.no_grad():
        gap_d = gap.detach()
        # A tie is a coin flip: it counts one half, so all-equal scores read as 0.5 accuracy.
        correct = (gap_d > 0).to(gap_d.dtype) + 0.5 * (gap_d == 0).to(gap_d.dtype)
        w = None if weights is None else weights.detach()
        stats = {
            "reward/accuracy": _weighted_mean(correct, w),
            "reward/margin": _weighted_mean(gap_d, w),
            "reward/chosen": _weighted_mean(chosen_scores.detach(), w),
            "reward/rejected": _weighted_mean(rejected_scores.detach(), w),
        }
    return loss, stats


def ranking_pairs(ranks: Sequence[int], offset: int = 0) -> tuple[Tensor, Tensor]:
    """Every (better, worse) pair of one ranking of K answers; ties give no pair.

    ``ranks[i]`` is answer i's rank, 0 = best, equal ranks = tie (the convention of
    ``Record.ranks``). A ranking of K distinct ranks gives C(K, 2) = K(K-1)/2 pairs
    (Ouyang et al. 2022, sec. 3.5); e.g. ranks (0, 1, 1) give (0, 1) and (0, 2) only.

    Args:
        ranks: K ranks, one per answer, in the order the answers are scored.
        offset: added to every index, so the answers can sit inside a larger score vector.

    Returns:
        better_idx, worse_idx: (P,) int64 indices with ranks[better] < ranks[worse], in
        ``itertools.combinations`` order.
    """
    better: list[int] = []
    worse: list[int] = []
    for i, j in itertools.combinations(range(len(ranks)), 2):
        if ranks[i] == ranks[j]:
            continue
        b, w = (i, j) if ranks[i] < ranks[j] else (j, i)
        better.append(b + offset)
        worse.append(w + offset)
    return torch.tensor(better, dtype=torch.long), torch.tensor(worse, dtype=torch.long)


def batch_ranking_pairs(rank_groups: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs and weights for a batch of rankings whose answers are scored in one flat vector.

    Answers are laid out group after group: group g's K_g answers take positions
    ``sum(K_<g) ... sum(K_<g) + K_g - 1`` of the (N,) score vector, N = sum(K_g).
    Each pair of group g gets weight 1 / P_g (P_g = pairs of that group), so in
    :func:`ranking_loss` every ranking counts as one comparison however many answers
    it has. A group whose answers all tie gives no pair and no weight.

    Returns:
        better_idx, worse_idx: (P,) int64 indices into the (N,) score vector.
        pair_weights: (P,) float32, 1 / P_g for each pair of group g.
    """
    betters: list[Tensor] = []
    worses: list[Tensor] = []
    weights: list[Tensor] = []
    offset = 0
    for ranks in rank_groups:
        b, w = ranking_pairs(ranks, offset)
        betters.append(b)
        worses.append(w)
        weights.append(torch.full((len(b),), 1.0 / max(len(b), 1)))
        offset += len(ranks)
    if not betters:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone(), torch.zeros(0)
    return torch.cat(betters), torch.cat(worses), torch.cat(weights)


def ranking_loss(
    scores: Tensor,
    better_idx: Tensor,
    worse_idx: Tensor,
    pair_weights: Tensor | None = None,
    margin: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """K-way ranking loss: Bradley-Terry over every pair, each answer scored once.

    InstructGPT (Ouyang et al. 2022, sec. 3.5, eq. 1)::

        loss = -1/C(K,2) * E_{(x, y_w, y_l)} log σ(r(x, y_w) - r(x, y_l))

    The model is run once over all N answers; the pairs only *gather* from the
    (N,) score vector, so a ranking of K answers costs K forward passes, not
    2 * C(K, 2), and the gradient of each score sums over all pairs it is in.
    With ``pair_weights`` from :func:`batch_ranking_pairs` the 1/C(K,2) factor is
    applied per ranking (each ranking weighs the same in the mean).

    Args:
        scores: (N,) reward of every answer in the batch.
        better_idx: (P,) int64 index into ``scores`` of the preferred answer of each pair.
        worse_idx: (P,) int64 index of the other answer.
        pair_weights: (P,) or None; see :func:`bradley_terry_loss`.
        margin: (P,) or None; required gap per pair.

    Returns:
        (loss, stats) exactly as :func:`bradley_terry_loss` over the gathered pairs.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be (N,), got shape {tuple(scores.shape)}")
    if better_idx.numel() == 0:
        raise ValueError("ranking_loss got no pairs (every ranking in the batch is a tie)")
    return bradley_terry_loss(scores[better_idx], scores[worse_idx], margin=margin, weights=pair_weights)


def centering_loss(chosen_scores: Tensor, rejected_scores: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Auxiliary loss that pulls rewards towards mean zero.

    The Bradley-Terry loss only sees differences r_c - r_r, so the reward's offset
    is free to drift; this term pins it (Eisenstein et al. 2023, "Helping or
    Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward Hacking",
    arXiv:2312.09244, eq. 2)::

        loss = mean_b (r_c[b] + r_r[b])^2

    Multiply it by a small coefficient before adding it to the pair loss. TRL's
    ``RewardConfig.center_rewards_coefficient`` documents 0.01 as the recommended
    value (its default is None, i.e. the term is off); alignkit's trainer chooses its own default.

    Example: r_c = (1, 2), r_r = (-1, 0) -> sums (0, 2) -> mean(0, 4) = 2.

    Args:
        chosen_scores: (B,) reward of each chosen answer.
        rejected_scores: (B,) reward of each rejected answer.

    Returns:
        loss: 0-d tensor (not yet scaled by the coefficient).
        stats: ``reward/mean`` (mean of all 2B scores, detached).
    """
    _check_pairs("rejected_scores", rejected_scores, chosen_scores)
    loss = ((chosen_scores + rejected_scores) ** 2).mean()
    stats = {"reward/mean": torch.cat([chosen_scores, rejected_scores]).detach().mean()}
    return loss, stats
