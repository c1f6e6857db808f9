"""Critic-free, sequence-level advantages over groups of answers: GRPO, RLOO, REINFORCE++.

Notation
--------
G            ``group_size``: answers sampled per prompt (TRL's ``num_generations``)
B = n · G    the flat batch, laid out group by group: rows g·G ... g·G + G - 1 are prompt g's answers
r_i          ``scores`` (B,), the sequence-level reward of answer i; NaN means unscorable (the reward
             function returned None): the answer leaves its group's statistics and gets A_i = 0
S_g, n_g     the scorable answers of group g (r not NaN) and their number
mean_g       (1/n_g) Σ_{j∈S_g} r_j
std_g        sqrt(Σ_{j∈S_g} (r_j - mean_g)² / (n_g - 1)), the unbiased (Bessel) std; undefined (NaN) for n_g < 2
A_i          the advantage (B,), one number per answer; the loss broadcasts it over the answer's tokens
             (outcome supervision: every token of an answer gets the answer's advantage)

No value model: the baseline is the other answers to the same prompt. Advantages are targets, so every
function here runs under ``torch.no_grad``. NaN handling and every edge case (a group with < 2 scorable
answers, G = 1) follow TRL 1.16 (``GRPOTrainer._generate_and_score_completions``,
``RLOOTrainer._generate_and_score_completions``): statistics are NaN-aware, an advantage that comes out
NaN (an unscorable answer, or a division by an undefined std) is set to 0 (``nan_to_num(nan=0.0)``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "SCALES",
    "GroupStats",
    "batch_normalized_advantages",
    "group_normalized_advantages",
    "group_stats",
    "leave_one_out_advantages",
    "nanstd",
]

SCALES = ("group", "batch", "none")


def _grouped(scores: Tensor, group_size: int) -> Tensor:
    """(B,) scores -> (B / G, G) view, one row per prompt; float; ValueError on a bad shape."""
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (B,), got shape {tuple(scores.shape)}")
    if group_size < 1 or scores.numel() % group_size != 0:
        raise ValueError(
            f"{scores.numel()} scores do not split into groups of {group_size}: "
            "B must be a multiple of group_size >= 1"
        )
    if not scores.is_floating_point():
        scores = scores.float()
    return scores.view(-1, group_size)


def nanstd(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Unbiased standard deviation of the non-NaN entries of ``x``; NaN where fewer than two remain.

    sqrt(Σ (x - μ)² / (n - 1)) over the n non-NaN entries, μ their mean: the semantics of TRL 1.16's
    ``trl.trainer.utils.nanstd`` (which GRPO and RLOO use), including NaN (not 0) for n < 2.

    Args:
        x: any shape, float.
        dim: reduce over this dimension; None reduces over everything to a 0-d tensor.
        keepdim: keep the reduced dimension (size 1).
    """
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim, keepdim=True)
    correction = count.to(var.dtype) / (count - 1)  # Bessel; only where count > 1
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    std = torch.sqrt(var * correction)
    if keepdim:
        return std
    return std.squeeze(dim) if dim is not None else std.reshape(())


class GroupStats(NamedTuple):
    """Per-group statistics for logging, each (B / G,)."""

    mean: Tensor
    """mean_g over the scorable answers; NaN for a group with none."""
    std: Tensor
    """std_g (unbiased, :func:`nanstd`); NaN for a group with fewer than two scorable answers."""
    all_equal: Tensor
    """bool: the group gives no learning signal (every advantage is 0): std_g ≈ 0, or n_g < 2."""
    count: Tensor
    """n_g, the number of scorable answers (int64)."""


@torch.no_grad()
def group_stats(scores: Tensor, group_size: int) -> GroupStats:
    """Mean, std, "all equal" and the scorable count of each group of ``group_size`` answers.

    ``all_equal`` is ``isclose(std_g, 0)`` (torch's default tolerances, |std_g| <= 1e-8) or n_g < 2.
    TRL 1.16 logs ``frac_reward_zero_std`` from ``isclose(std_g, 0)`` alone, so a group with one scorable
    answer (std NaN) does not count there; here it does, since its only advantage is 0 too.

    Args:
        scores: (B,) rewards, NaN for unscorable answers.
        group_size: G.
    """
    grouped = _grouped(scores, group_size)
    std = nanstd(grouped, dim=1)
    count = (~torch.isnan(grouped)).sum(dim=1)
    all_equal = torch.isclose(std, torch.zeros_like(std)) | (count < 2)
    return GroupStats(torch.nanmean(grouped, dim=1), std, all_equal, count)


@torch.no_grad()
def group_normalized_advantages(
    scores: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> Tensor:
    """GRPO's advantage: each reward against its group's mean, divided by a std (or not).

    Shao et al. 2024, "DeepSeekMath" (arXiv:2402.03300), sec. 4.1.2, outcome supervision::

        A_i = (r_i - mean_g) / (std_g + eps)          scale="group"  (the paper; TRL's default)
        A_i = (r_i - mean_g) / (std_batch + eps)      scale="batch"  (std over all scorable scores)
        A_i =  r_i - mean_g                           scale="none"   (Dr. GRPO)

    "none" is Liu et al. 2025, "Understanding R1-Zero-Like Training" (arXiv:2503.20783): dividing
    by std_g gives questions that are too easy or too hard (small std_g) more weight. "batch" keeps the
    group baseline but takes the scale from the whole batch.

    Matches TRL 1.16 ``GRPOTrainer`` (``multi_objective_aggregation="sum_then_normalize"``, the default;
    ``scale_rewards``): the same NaN-aware mean, unbiased :func:`nanstd`, ``eps`` = 1e-4 added to the std
    (not under a square root), ``nan_to_num(nan=0.0)`` at the end. So: an unscorable answer gets 0; a group
    with one scorable answer gets 0 (std_g undefined; for "none", r - mean_g = 0); G = 1 gives all 0; a
    group of equal rewards gives 0. TRL computes this over the scores gathered from all processes: under
    data parallelism pass the whole gathered batch (groups must not be split across processes).

    Worked example, G = 3, scores (1, 2, 3): mean 2, std 1, A = (-1, 0, 1) / 1.0001.

    Args:
        scores: (B,) rewards r_i, NaN for unscorable answers.
        group_size: G.
        scale: one of ``SCALES``.
        eps: added to the std.

    Returns:
        (B,) advantages, finite where the scores are finite.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    grouped = _grouped(scores, group_size)
    rewards = grouped.reshape(-1)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    advantages = rewards - mean
    if scale == "group":
        std = (
            nanstd(grouped, dim=1).repeat_interleave(group_size)
            if group_size > 1
            else torch.zeros_like(rewards)
        )
        advantages = advantages / (std + eps)
    elif scale == "batch":
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = advantages / (std + eps)
    return torch.nan_to_num(advantages, nan=0.0)


@torch.no_grad()
def leave_one_out_advantages(
    scores: Tensor, group_size: int, normalize: bool = False, eps: float = 1e-4
) -> Tensor:
    """RLOO's advantage: each reward against the mean of the other scorable answers to its prompt.

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs" (arXiv:2402.14740), eq. 7; the estimator is Kool et al. 2019, "Buy 4 REINFORCE
    Samples, Get a Baseline for Free!"::

        A_i = r_i - (1 / (n_g - 1)) Σ_{j∈S_g, j≠i} r_j   =   n_g / (n_g - 1) · (r_i - mean_g)

    The baseline leaves r_i out, so it is independent of answer i and the gradient stays unbiased (GRPO's
    mean_g includes r_i). An unscorable answer gets 0; so does the one scorable answer of a group with
    n_g = 1 (no other answer to compare with: 0 / 0 in TRL, zeroed); G = 1 gives all 0.

    ``normalize`` whitens the result over the batch, (A - mean) / (std + eps), with the mean and unbiased
    std of the *defined* advantages only (the rows above that get 0 stay out of the statistics and stay 0).

    Compared with TRL 1.16 ``RLOOTrainer``: the same baseline (``(nansum - r) / (count - 1)``), the same
    NaN rules and ``normalize_advantages`` (default off, eps 1e-4). TRL folds its KL penalty into the
    reward *before* the baseline (r - β Σ_t (logp_old - logp_ref), the sequence-level k1 on the rollout
    log-probs, as Ahmadian et al. do): pass that KL-shaped reward as ``scores``. Its loss is
    sequence-level too (the ratio of whole-sequence probabilities, clipped, mean over sequences), not
    :func:`alignkit.losses.policy_gradient.clipped_token_loss`; that is the trainer's choice.

    Worked example, G = 4, scores (1, 2, 3, 6): the others' means are 11/3, 10/3, 3, 2, so
    A = (-8/3, -4/3, 0, 4) = 4/3 · (r - 3).

    Args:
        scores: (B,) rewards, NaN for unscorable answers.
        group_size: G.
        normalize: whiten over the batch afterwards (TRL's ``normalize_advantages``).
        eps: added to the std when normalising.

    Returns:
        (B,) advantages.
    """
    grouped = _grouped(scores, group_size)
    if group_size == 1:
        return torch.zeros_like(grouped.reshape(-1))
    count = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    total = torch.nansum(grouped, dim=1, keepdim=True)
    baseline = (total - grouped) / (count - 1)  # NaN for n_g = 1 (0 / 0) and on unscorable rows
    advantages = (grouped - baseline).reshape(-1)
    if normalize:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + eps)
    return torch.nan_to_num(advantages, nan=0.0)


@torch.no_grad()
def batch_normalized_advantages(scores: Tensor, eps: float = 1e-4) -> Tensor:
    """REINFORCE++'s advantage for a sequence-level reward: normalised over the whole batch.

    Hu et al. 2025, "REINFORCE++" (arXiv:2501.03262), global advantage normalisation: the return of each
    token, A_t = r(x, y) - β Σ_{s>=t} KL_s, is normalised with the mean and std over the whole batch
    instead of a per-prompt group (whose std is biased and can be ~0). For the sequence-level score
    (one value per answer; a KL term, if any, already folded into ``scores``)::

        A_i = (r_i - mean_batch) / (std_batch + eps)

    NaN-aware as the group estimators: an unscorable answer leaves the statistics and gets 0; with fewer
    than two scorable answers every advantage is 0. ``std_batch`` is the unbiased :func:`nanstd`; ``eps``
    1e-4 as TRL's ``normalize_advantages`` (this is exactly that step, applied to raw scores). With G > 1
    answers per prompt, REINFORCE++ "with baseline" first subtracts the group mean, then normalises over
    the batch: ``leave_one_out_advantages``'s ``normalize`` does the same with the leave-one-out baseline.

    Worked example, scores (1, 2, 3, 6): mean 3, std sqrt(14/3) ≈ 2.1602, A ≈ (-0.926, -0.463, 0, 1.389).

    Args:
        scores: (B,) rewards, NaN for unscorable answers.
        eps: added to the std.

    Returns:
        (B,) advantages.
    """
    rewards = _grouped(scores, 1).reshape(-1)
    advantages = (rewards - torch.nanmean(rewards)) / (nanstd(rewards) + eps)
    return torch.nan_to_num(advantages, nan=0.0)
