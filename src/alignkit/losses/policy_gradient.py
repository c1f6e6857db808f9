"""Critic-free policy losses: the clipped token surrogate with asymmetric clipping, its aggregations, the k3 KL term.

Notation
--------
B, T          answers in the batch, tokens per row (padded)
m_t           ``mask`` (B, T), True (or 1) on the answer tokens that count in the loss
logp_t        log π(o_t | q, o_<t) under the policy being trained, ``logps`` (B, T); ``old_logps``
              likewise under π_old, the policy that sampled; ``ref_logps`` under π_ref
ratio_t       π(o_t) / π_old(o_t) = exp(logp_t - old_logp_t)
A             the answer's advantage (B,) from :mod:`alignkit.losses.group`, the same for all its tokens
ε_low, ε_high the clip range [1 - ε_low, 1 + ε_high]
β             the KL coefficient

GRPO's objective, Shao et al. 2024, "DeepSeekMath" (arXiv:2402.03300), eq. 3 (maximised)::

    J = E[ (1/G) Σ_i (1/|o_i|) Σ_t { min(ratio_t A_i, clip(ratio_t, 1-ε, 1+ε) A_i) - β D_KL,t } ]
    D_KL,t = π_ref/π - log(π_ref/π) - 1                                                   (eq. 4)

The loss is its negation, L_t = -min(...) + β D_KL,t per token (:func:`clipped_token_loss`,
:func:`kl_loss_term`), reduced to a scalar by :func:`aggregate_token_loss`, whose ``loss_type`` picks the
1/|o_i| normalisation (GRPO's) or one of its length-unbiased replacements. Everything follows TRL 1.16
``GRPOTrainer._compute_loss`` (token-level importance sampling, no ``delta`` two-sided clip, no
``use_bias_correction_kl``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from alignkit.losses.kl import kl_penalty
from alignkit.losses.masked import masked_mean

__all__ = [
    "LOSS_TYPES",
    "ClippedTokenLoss",
    "aggregate_token_loss",
    "clip_fractions",
    "clipped_sequence_loss",
    "clipped_token_loss",
    "kl_loss_term",
]

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


class ClippedTokenLoss(NamedTuple):
    """The per-token loss and where the clip cut the gradient, each (B, T); not masked."""

    loss: Tensor
    """-min(ratio A, clip(ratio) A), differentiable in ``logps``."""
    low_clipped: Tensor
    """bool: ratio < 1 - ε_low and A < 0 (the clip is the active, gradient-free branch)."""
    high_clipped: Tensor
    """bool: ratio > 1 + ε_high and A > 0."""


def clipped_token_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> ClippedTokenLoss:
    """PPO-clip's surrogate per token, with a separate lower and upper clip (DAPO's clip-higher).

    Schulman et al. 2017, eq. 7, with the clip range split by Yu et al. 2025, "DAPO" (arXiv:2503.14476),
    sec. 3.1 "Clip-Higher" (they use ε_low = 0.2, ε_high = 0.28: a larger ε_high lets unlikely tokens with
    A > 0 gain probability, against entropy collapse)::

        L_t = -min(ratio_t · A, clip(ratio_t, 1 - ε_low, 1 + ε_high) · A)

    The min is pessimistic: with A > 0 the gradient stops once ratio > 1 + ε_high (but not below
    1 - ε_low); with A < 0 it stops once ratio < 1 - ε_low (but not above 1 + ε_high). Those two cases are
    ``high_clipped`` and ``low_clipped``, TRL's ``is_high_clipped`` / ``is_low_clipped``; at A = 0 the loss
    and its gradient are 0 and nothing counts as clipped. ε_low = ε_high = ε is
    :func:`alignkit.losses.ppo.clipped_policy_loss`'s surrogate. TRL 1.16: ``epsilon`` (ε_low, 0.2) and
    ``epsilon_high`` (defaults to ``epsilon``).

    Worked example, ε_low = 0.2, ε_high = 0.28, ratio 1.5: A = +1 gives -min(1.5, 1.28) = -1.28 (high-clipped,
    no gradient); A = -1 gives -min(-1.5, -1.28) = 1.5 (gradient kept).

    Args:
        logps: (B, T) log π of the sampled tokens (with grad).
        old_logps: (B, T) log π_old of the same tokens (the rollout's; ``logps.detach()`` on the first update).
        advantages: (B,) one per answer, broadcast over its tokens, or (B, T) per token.
        epsilon_low: ε_low in [0, 1).
        epsilon_high: ε_high >= 0.

    Returns:
        :class:`ClippedTokenLoss`, each field (B, T); reduce with :func:`aggregate_token_loss` and
        :func:`clip_fractions`.
    """
    if not 0.0 <= epsilon_low < 1.0 or epsilon_high < 0.0:
        raise ValueError(
            f"need 0 <= epsilon_low < 1 and epsilon_high >= 0, got {epsilon_low}, {epsilon_high}"
        )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logps - old_logps)
    clipped_ratio = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    loss = -torch.min(ratio * advantages, clipped_ratio * advantages)
    with torch.no_grad():
        r = ratio.detach()
        low = (r < 1.0 - epsilon_low) & (advantages < 0)
        high = (r > 1.0 + epsilon_high) & (advantages > 0)
    return ClippedTokenLoss(loss, low, high)


def kl_loss_term(logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    """β · D_KL,t, GRPO's per-token KL to the reference, added to the per-token loss before aggregating.

    Shao et al. 2024, eq. 4: D_KL,t = π_ref/π - log(π_ref/π) - 1, Schulman's k3 estimator of
    KL(π || π_ref) (>= 0, unbiased); TRL 1.16 computes it as
    ``exp(ref_logp - logp) - (ref_logp - logp) - 1``. This is
    :func:`alignkit.losses.kl.kl_penalty` with ``"k3"``: with d = logp - ref_logp it returns
    expm1(-d) + d, the same function (and gradient 1 - e^{-d} in ``logps``). Unlike PPO, GRPO puts the KL
    in the loss, not in the reward. β = 0 returns zeros without reading ``ref_logps`` values.

    Args:
        logps: (B, T) log π of the sampled tokens (with grad).
        ref_logps: (B, T) log π_ref of the same tokens.
        beta: β >= 0 (TRL's ``beta``, default 0.0).

    Returns:
        (B, T), not masked.
    """
    if beta == 0.0:
        return torch.zeros_like(logps)
    return beta * kl_penalty(logps, ref_logps, "k3")


def aggregate_token_loss(
    per_token_loss: Tensor,
    mask: Tensor,
    loss_type: str = "dapo",
    max_completion_length: int | None = None,
    num_items: Tensor | float | None = None,
) -> Tensor:
    """Reduce a (B, T) per-token loss to the scalar to backpropagate, as TRL 1.16's ``loss_type``.

    With S = Σ_{i,t} m_{i,t} L_{i,t} (masked positions dropped)::

        grpo     (1/B) Σ_i (Σ_t m_{i,t} L_{i,t}) / max(Σ_t m_{i,t}, 1)   DeepSeekMath eq. 3: each answer's
                                                                      token mean, then the mean over answers
        bnpo     S / max(Σ_{i,t} m_{i,t}, 1)                           every token of the batch weighs the same
        dr_grpo  S / (B · max_completion_length)                       Dr. GRPO (Liu et al. 2025):
                                                                      a constant, no length normalisation
        dapo     S / max(num_items, 1)                                 DAPO (Yu et al. 2025, sec. 3.3,
                                                                      token-level loss): the token count of
                                                                      the whole generation batch

    GRPO's 1/|o_i| makes a token of a short answer weigh more than one of a long answer: correct short
    answers are favoured and wrong long ones under-penalised (Liu et al. 2025). bnpo, dr_grpo and dapo
    weigh tokens equally; they differ in the denominator: bnpo's is this micro-batch's token count (it
    varies between micro-batches), dr_grpo's and dapo's do not. TRL's default is "dapo".

    ``num_items`` (dapo) is the caller's: TRL 1.16 counts the loss tokens of the whole generation batch
    over all processes (``num_items_in_batch``) and divides by ``num_processes``, and in training multiplies
    by ``gradient_accumulation_steps / steps_per_generation``, so that the micro-batch losses of one
    optimizer step sum to S_window / tokens_window. For grpo, bnpo and dr_grpo TRL divides the result by
    ``gradient_accumulation_steps`` afterwards: that scaling is the trainer's too; this function returns
    TRL's ``policy_loss`` before it. Empty rows: grpo counts them in 1/B (their term is 0), as TRL does.
    Masked positions are dropped with ``where`` (TRL multiplies by the mask): equal on finite values, but
    NaN or inf on a masked position cannot leak in here.

    Args:
        per_token_loss: (B, T), e.g. ``clipped_token_loss(...).loss + kl_loss_term(...)``.
        mask: (B, T) bool or 0/1.
        loss_type: one of ``LOSS_TYPES``.
        max_completion_length: dr_grpo's constant (the generation limit, not this batch's T).
        num_items: dapo's token count (an int, float or 0-d tensor).

    Returns:
        0-d tensor.
    """
    mask = mask.bool()
    masked = torch.where(mask, per_token_loss, torch.zeros_like(per_token_loss))
    if loss_type == "grpo":
        return masked_mean(per_token_loss, mask, dim=1).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        if max_completion_length is None or max_completion_length < 1:
            raise ValueError(f"dr_grpo needs max_completion_length >= 1, got {max_completion_length}")
        return masked.sum() / (per_token_loss.size(0) * max_completion_length)
    if loss_type == "dapo":
        if num_items is None:
            raise ValueError("dapo needs num_items, the number of loss tokens in the generation batch")
        count_dtype = torch.promote_types(masked.dtype, torch.float32)  # a bf16 token count would round
        return masked.sum() / torch.as_tensor(num_items, device=masked.device).to(count_dtype).clamp(min=1.0)
    raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}")


def clip_fractions(clipped: ClippedTokenLoss, mask: Tensor) -> dict[str, Tensor]:
    """Fractions of loss tokens clipped low, high and either, as detached 0-d tensors (masked means).

    Named as TRL 1.16's metrics (``clip_ratio/low_mean``, ``clip_ratio/high_mean``,
    ``clip_ratio/region_mean``); TRL sums and counts over all processes before dividing, this is one
    process's fraction. A rising ``high`` fraction means
    updates push likely-good tokens past 1 + ε_high; ε_high > ε_low lowers it.

    Args:
        clipped: from :func:`clipped_token_loss`.
        mask: (B, T) bool or 0/1.
    """
    low, high = clipped.low_clipped, clipped.high_clipped
    dtype = clipped.loss.dtype
    return {
        "clip_ratio/low_mean": masked_mean(low.to(dtype), mask),
        "clip_ratio/high_mean": masked_mean(high.to(dtype), mask),
        "clip_ratio/region_mean": masked_mean((low | high).to(dtype), mask),
    }


def clipped_sequence_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> ClippedTokenLoss:
    """PPO-clip on whole answers: one ratio per answer, the ratio of its sequence probabilities.

    TRL 1.16 ``RLOOTrainer._compute_loss`` (the REINFORCE estimator of Ahmadian et al. 2024, arXiv:2402.14740,
    made off-policy with PPO's clip, as TRL does)::

        ratio_i = π(o_i) / π_old(o_i) = exp(Σ_t m_{i,t} (logp_{i,t} - old_logp_{i,t}))
        L_i     = -min(ratio_i · A_i, clip(ratio_i, 1 - ε_low, 1 + ε_high) · A_i)

    On the first update of a rollout ratio_i = 1 and the gradient is -A_i ∇ log π(o_i), REINFORCE with
    the baseline inside A_i. Reduce with ``.loss.mean()`` (TRL: the mean over answers).

    Args:
        logps: (B, T) log π of the sampled tokens (with grad).
        old_logps: (B, T) log π_old of the same tokens.
        advantages: (B,) one per answer.
        mask: (B, T) bool or 0/1, the answer's tokens.
        epsilon_low: ε_low in [0, 1).
        epsilon_high: ε_high >= 0.

    Returns:
        :class:`ClippedTokenLoss` with each field (B,) (one entry per answer).
    """
    mask = mask.bool()
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    seq = torch.where(mask, logps, zero).sum(1)
    old = torch.where(mask, old_logps, zero).sum(1)
    out = clipped_token_loss(seq[:, None], old[:, None], advantages.reshape(-1, 1), epsilon_low, epsilon_high)
    return ClippedTokenLoss(out.loss[:, 0], out.low_clipped[:, 0], out.high_clipped[:, 0])
