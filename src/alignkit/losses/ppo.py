"""PPO-clip for RLHF: the clipped policy loss and the clipped value loss.

Notation
--------
B, T         batch size, tokens per row (padded); each token is one "action"
m_t          ``response_mask`` (B, T), True on real response tokens (prompt and padding False)
π, π_old     the policy being trained, and the policy that sampled the rollout
logp_t       log π(y_t | x, y_<t), ``logps`` (B, T); ``old_logps`` likewise
V_t          value estimate at token t, ``values`` (B, T)
A_t, R_t     advantage and return (value target), (B, T)
ratio_t      π(y_t) / π_old(y_t) = exp(logp_t - old_logp_t)
ε            clip range

The RLHF recipe: reward R(x, y) = r(x, y) - β log(π(y|x) / ρ(y|x)), the KL term
spread over tokens and the score paid at the last token (Ziegler et al. 2019,
sec. 2.2; Stiennon et al. 2020, sec. 3.4; Ouyang et al. 2022, sec. 3.5), optimised
with PPO-clip (Schulman et al. 2017) on GAE advantages (Schulman et al. 2016).
Implementation details follow Huang et al. 2024, "The N+ Implementation Details of
RLHF with PPO: A Case Study on TL;DR Summarization" and the CleanRL PPO docs
(https://docs.cleanrl.dev/rl-algorithms/ppo/).

The recipe's other pieces are their own modules: KL estimators and controllers in
`alignkit.losses.kl`, rewards / GAE / reward normalisation in
`alignkit.losses.advantages`, masked statistics and whitening in
`alignkit.losses.masked`, entropy and log-probabilities from logits in
`alignkit.losses.logits`. The losses here are differentiable in ``logps`` / ``values``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.losses.masked import masked_mean

__all__ = ["clipped_policy_loss", "clipped_value_loss"]


def clipped_policy_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    clip_eps: float = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO-clip policy loss, the token-level masked mean of the negated surrogate.

    Schulman et al. 2017, eq. 7::

        L_t  = -min(ratio_t · A_t, clip(ratio_t, 1 - ε, 1 + ε) · A_t)
        loss = Σ_t m_t L_t / Σ_t m_t          (every response token weighs the same)

    The min is the pessimistic choice: gains beyond the clip are ignored, losses are not.
    Worked example, logp - old_logp = 1 so ratio = e ≈ 2.718, ε = 0.2:
    A = +1: -min(e, 1.2) = -1.2 (clipped, no gradient); A = -1: -min(-e, -1.2) = e (unclipped).

    Args:
        logps: (B, T) log π of the rollout tokens under the current policy (with grad).
        old_logps: (B, T) log π_old from the rollout.
        advantages: (B, T) usually whitened.
        response_mask: (B, T) bool.
        clip_eps: ε.

    Returns:
        loss: 0-d tensor.
        stats (detached, masked means): ``ppo/clipfrac`` (fraction of tokens where the
        clipped term is the larger loss, i.e. the gradient is cut; the definition of
        OpenAI's lm-human-preferences and TRL), ``ppo/approx_kl`` (0.5 · mean d² with
        d = logp - old_logp, the estimator lm-human-preferences and TRL log),
        ``ppo/approx_kl_k3`` (mean (ratio - 1) - log ratio, CleanRL's unbiased
        estimator of KL(π_old || π)), ``ppo/ratio_mean``.
    """
    log_ratio = logps - old_logps
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), response_mask)

    with torch.no_grad():
        lr, r = log_ratio.detach(), ratio.detach()
        stats = {
            "ppo/clipfrac": masked_mean((clipped.detach() > unclipped.detach()).to(r.dtype), response_mask),
            "ppo/approx_kl": masked_mean(0.5 * lr * lr, response_mask),
            "ppo/approx_kl_k3": masked_mean((r - 1.0) - lr, response_mask),
            "ppo/ratio_mean": masked_mean(r, response_mask),
        }
    return loss, stats


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    response_mask: Tensor,
    clip_range: float = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss: the new value may not move more than ``clip_range`` from the rollout's.

    OpenAI baselines ppo2 and lm-human-preferences; detail "value function loss
    clipping" in the CleanRL PPO docs and Huang et al. 2024::

        V_clip = old_V + clip(V - old_V, -ε, ε)
        loss   = 0.5 · Σ_t m_t max((V_t - R_t)², (V_clip,t - R_t)²) / Σ_t m_t

    Args:
        values: (B, T) current value predictions (with grad).
        old_values: (B, T) value predictions from the rollout.
        returns: (B, T) targets R_t from :func:`alignkit.losses.advantages.gae`.
        response_mask: (B, T) bool.
        clip_range: ε, in the units of the value.

    Returns:
        loss: 0-d tensor.
        stats (detached, masked means): ``ppo/value_clipfrac`` (fraction where the
        clipped error is the larger one), ``ppo/value_error`` (mean unclipped (V - R)²).
    """
    values_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    err = (values - returns) ** 2
    err_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), response_mask)
    with torch.no_grad():
        stats = {
            "ppo/value_clipfrac": masked_mean((err_clipped > err).to(err.dtype), response_mask),
            "ppo/value_error": masked_mean(err.detach(), response_mask),
        }
    return loss, stats
