"""PPO for RLHF: KL-shaped rewards, GAE, whitening, clipped losses, KL controllers.

Notation
--------
B, T, V      batch size, tokens per row (padded), vocabulary size
t            token position; each token is one "action"
m_t          ``response_mask`` (B, T), True on real response tokens (prompt and padding False)
π, π_old     the policy being trained, and the policy that sampled the rollout
ρ            the frozen reference policy (the SFT model)
logp_t       log π(y_t | x, y_<t), ``logps`` (B, T); ``old_logps``, ``ref_logps`` likewise
r(x, y)      the reward model's score of a whole response, ``scores`` (B,)
β            KL coefficient, ``kl_coef``
V_t          value estimate at token t, ``values`` (B, T)
γ, λ         discount and GAE parameter
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

Rewards, advantages and returns are *targets*: the functions that build them run
under ``torch.no_grad``. The losses are differentiable in ``logps`` / ``values``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "RunningMoments",
    "clip_rewards",
    "clipped_policy_loss",
    "clipped_value_loss",
    "entropy_from_logits",
    "gae",
    "kl_penalty",
    "logprobs_from_logits",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "per_token_rewards",
]

KL_ESTIMATORS = ("k1", "k2", "k3", "abs")


# --------------------------------------------------------------------------- masked statistics


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is True.

    ``sum(x * m) / max(sum(m), 1)``: an all-False mask gives 0, not NaN. Masked-out
    entries are dropped with ``where``, so NaN or inf there cannot leak in.

    Args:
        x: any shape, e.g. (B, T).
        mask: bool, same shape as ``x``.
        dim: reduce over this dimension only (e.g. ``dim=1`` gives a (B,) per-row mean);
            None reduces over everything to a 0-d tensor.
    """
    mask = mask.bool()
    total = torch.where(mask, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / mask.sum().clamp_min(1)
    return total.sum(dim) / mask.sum(dim).clamp_min(1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over all positions where ``mask`` is True (0-d).

    ``unbiased`` applies Bessel's correction n / (n - 1) (as ``torch.var`` does);
    with n <= 1 masked entries the result is 0 instead of NaN.
    """
    mask = mask.bool()
    centred = x - masked_mean(x, mask)
    var = masked_mean(centred * centred, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp_min(1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Whiten ``x`` with the mean and (unbiased) variance of its masked entries.

    ``(x - μ) / sqrt(σ² + eps)`` on masked entries, then ``+ μ`` back when
    ``shift_mean`` is False (scale only). Advantages are whitened with the shift
    and, optionally, rewards without it (Huang et al. 2024, details on reward and
    advantage whitening). Statistics are over the whole batch, not per row.

    Invariants (on positions where ``mask`` is True): masked mean 0 (``shift_mean``)
    or unchanged (not ``shift_mean``); masked unbiased variance σ² / (σ² + eps) ≈ 1.
    Positions where ``mask`` is False are set to 0.

    Args:
        x: (B, T) float.
        mask: (B, T) bool.
    """
    mask = mask.bool()
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=True)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))


# --------------------------------------------------------------------------- KL and rewards


def kl_penalty(logps: Tensor, ref_logps: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token estimate of KL(π || ρ) for tokens sampled from π.

    With log-ratio d = logp - ref_logp and r = ρ/π = exp(-d) (Schulman 2020,
    "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html)::

        k1  = d = -log r                 unbiased, high variance, can be negative
        k2  = d² / 2 = (log r)² / 2      biased, low variance, >= 0
        k3  = (r - 1) - log r            unbiased, low variance, >= 0 (since e^x >= 1 + x)
        abs = |d|

    k1 is the penalty of Ziegler et al. 2019 (sec. 2.2) and Stiennon et al. 2020
    (eq. 2). k3 uses ``expm1`` for accuracy near d = 0; it overflows to inf for
    ref_logp - logp above ~88 in float32.

    Args:
        logps: (B, T) log π of the sampled tokens.
        ref_logps: (B, T) log ρ of the same tokens.
        estimator: one of ``KL_ESTIMATORS``.

    Returns:
        (B, T) estimate per token; not masked.
    """
    d = logps - ref_logps
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.expm1(-d) + d
    if estimator == "abs":
        return d.abs()
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")


def _last_true_index(mask: Tensor) -> tuple[Tensor, Tensor]:
    """(B,) index of the last True in each row of ``mask`` (B, T), and (B,) whether the row has one."""
    T = mask.shape[1]
    # argmax returns the first maximum, so flip to find the last True.
    last = (T - 1) - mask.flip(1).to(torch.uint8).argmax(dim=1)
    return last, mask.any(dim=1)


@torch.no_grad()
def per_token_rewards(scores: Tensor, kl: Tensor, response_mask: Tensor, kl_coef: float) -> Tensor:
    """Token-level RLHF reward: a KL penalty on every token, the score on the last one.

    Ziegler et al. 2019, sec. 2.2; Stiennon et al. 2020, eq. 2::

        reward_t = -β · kl_t + [t = last response token] · r(x, y)

    The "last response token" is the last True of ``response_mask`` in each row,
    so left- and right-padded rows both work. Rows with no response token get
    all-zero rewards (their score has nowhere to go). Replacing the score of
    responses that never emitted EOS (Huang et al. 2024) is the caller's job.

    Args:
        scores: (B,) reward-model score of each response.
        kl: (B, T) per-token KL estimate, see :func:`kl_penalty`.
        response_mask: (B, T) bool.
        kl_coef: β >= 0 (a float, or a 0-d tensor from a KL controller).

    Returns:
        (B, T) rewards, 0 where ``response_mask`` is False.
    """
    mask = response_mask.bool()
    rewards = torch.where(mask, -kl_coef * kl, torch.zeros_like(kl))
    last, has_response = _last_true_index(mask)
    bonus = torch.where(has_response, scores.to(rewards.dtype), torch.zeros_like(scores, dtype=rewards.dtype))
    return rewards.scatter_add(1, last.unsqueeze(1), bonus.unsqueeze(1))


@torch.no_grad()
def gae(
    rewards: Tensor,
    values: Tensor,
    response_mask: Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over the response tokens of each row.

    Schulman et al. 2016, sec. 3, eq. 16::

        δ_t = r_t + γ V_{t+1} - V_t
        A_t = Σ_l (γλ)^l δ_{t+l} = δ_t + γλ A_{t+1}
        R_t = A_t + V_t                       (the λ-return, target of the value loss)

    The backward recursion runs over T once, vectorised over the batch. "t+1"
    means the next *real* token of the same row: masked positions are skipped
    (they carry the next real token's V and A through unchanged), and after a
    row's last real token the episode ends (V = 0, A = 0). For the usual
    contiguous response this is the textbook recursion; it also handles left
    padding. Huang et al. 2024 use γ = 1, λ = 0.95.

    Whiten the advantages (:func:`masked_whiten`) *after* this call: the returns
    must come from the raw advantages.

    Args:
        rewards: (B, T) per-token rewards, see :func:`per_token_rewards`.
        values: (B, T) value estimates from the rollout.
        response_mask: (B, T) bool.

    Returns:
        advantages, returns: (B, T) each, 0 where ``response_mask`` is False.
    """
    mask = response_mask.bool()
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = rewards.new_zeros(B)
    next_adv = rewards.new_zeros(B)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = torch.where(m, adv, torch.zeros_like(adv))
        next_value = torch.where(m, values[:, t], next_value)
        next_adv = torch.where(m, adv, next_adv)
    returns = torch.where(mask, advantages + values, torch.zeros_like(values))
    return advantages, returns


# --------------------------------------------------------------------------- PPO losses


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
        returns: (B, T) targets R_t from :func:`gae`.
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


# --------------------------------------------------------------------------- from logits


def _row_chunks(logits: Tensor, chunk_rows: int) -> list[Tensor]:
    """Split (B, T, V) into pieces of at most ``chunk_rows`` (b, t) rows, viewed as (rows, V)."""
    flat = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
    return list(flat.split(max(chunk_rows, 1), dim=0))


def entropy_from_logits(logits: Tensor, chunk_rows: int = 1024) -> Tensor:
    """Entropy of the softmax distribution at every position.

    ``H = -Σ_v p_v log p_v = logsumexp(z) - Σ_v p_v z_v`` with p = softmax(z),
    computed as ``-Σ p · log_softmax(z)`` in float32; a -inf logit (a banned
    token) contributes 0, not NaN.

    Memory: a float32 copy of (B, T, V) logits is large (B=8, T=512, V=49152 is
    805 MB), so rows are processed ``chunk_rows`` at a time and only the (B, T)
    result is kept. Under autograd each chunk's softmax is still saved for the
    backward pass; log the entropy under ``torch.no_grad`` unless it is a loss term.

    Args:
        logits: (B, T, V), any float dtype.

    Returns:
        (B, T) float32 entropy in nats.
    """
    out = []
    for rows in _row_chunks(logits, chunk_rows):
        logp = torch.log_softmax(rows.float(), dim=-1)
        p = logp.exp()
        plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
        out.append(-plogp.sum(-1))
    return torch.cat(out).reshape(logits.shape[:-1])


def logprobs_from_logits(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, chunk_rows: int = 1024
) -> Tensor:
    """Log-probability of ``tokens`` under softmax(logits / temperature).

    ``log p(y_t) = z_t[y_t] / τ - logsumexp(z_t / τ)``. Sampling at temperature τ
    means the policy *is* softmax(z / τ): divide by the same τ when computing the
    rollout, reference and training log-probabilities, or the ratio and the KL
    compare different distributions (Huang et al. 2024, the temperature detail).

    Alignment is the caller's: the logits at position t must be the ones that
    predicted ``tokens[:, t]`` (usually ``logits[:, :-1]`` with ``input_ids[:, 1:]``).
    Computed in float32, ``chunk_rows`` (b, t) rows at a time (see
    :func:`entropy_from_logits`), gathering one logit per row instead of
    materialising a full log-softmax.

    Args:
        logits: (B, T, V), any float dtype.
        tokens: (B, T) int64 token ids.
        temperature: τ > 0.

    Returns:
        (B, T) float32 log-probabilities (``_token_logps``).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} do not match logits {tuple(logits.shape)}")
    flat_tokens = tokens.reshape(-1, 1)
    out = []
    start = 0
    for rows in _row_chunks(logits, chunk_rows):
        z = rows.float() / temperature if temperature != 1.0 else rows.float()
        picked = z.gather(-1, flat_tokens[start : start + len(rows)]).squeeze(-1)
        out.append(picked - torch.logsumexp(z, dim=-1))
        start += len(rows)
    return torch.cat(out).reshape(tokens.shape)


# --------------------------------------------------------------------------- KL controllers


class FixedKLController:
    """A constant KL coefficient β. Same interface as :class:`AdaptiveKLController`."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient is fixed."""

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional controller that steers the policy's KL to the reference towards a target.

    Ziegler et al. 2019, sec. 2.2 (the log-space proportional controller; OpenAI
    lm-human-preferences' ``AdaptiveKLController``)::

        e    = clip(KL / KL_target - 1, -0.2, 0.2)
        β   ← β · (1 + e · n_steps / horizon)

    KL above target raises β (pulls the policy back), below target lowers it. The
    clip bounds the change per update to ±0.2 · n_steps / horizon.

    Args:
        init_kl_coef: starting β.
        target: KL_target in nats per sequence (the KL you pass to :meth:`update`).
        horizon: number of samples (episodes) over which a full error would change β by e.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | Tensor, n_steps: int) -> None:
        """Adapt β after a batch of ``n_steps`` samples whose mean KL was ``current_kl``."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = float(state["horizon"])


# --------------------------------------------------------------------------- reward normalisation


class RunningMoments:
    """Running mean and standard deviation of every value seen, mergeable batch by batch.

    Used to normalise or scale reward-model scores during PPO (TRL's former
    ``use_score_scaling`` / ``use_score_norm``; Huang et al. 2024 on reward
    normalisation). Batches merge with Chan et al.'s parallel update ("Updating
    formulae and a pairwise algorithm for computing sample variances", 1979)::

        δ = μ_b - μ_a,  n = n_a + n_b
        μ = μ_a + δ · n_b / n
        M2 = M2_a + M2_b + δ² · n_a · n_b / n      (M2 = Σ (x - μ)²)

    State is kept in Python floats (float64). Under data parallelism, gather the
    scores of all processes before :meth:`update` so every process holds the same state.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.m2 = 0.0
        self.count = 0

    def update(self, x: Tensor) -> None:
        """Fold every element of ``x`` (any shape) into the running statistics."""
        flat = x.detach().reshape(-1).double()
        n_b = flat.numel()
        if n_b == 0:
            return
        mean_b = flat.mean().item()
        m2_b = ((flat - mean_b) ** 2).sum().item()
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    @property
    def var(self) -> float:
        """Unbiased variance M2 / (n - 1), as ``torch.var``; 0 with fewer than two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def normalize(self, x: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
        """``(x - mean) / (std + eps)``, or ``x / (std + eps)`` when not ``shift_mean``."""
        centred = x - self.mean if shift_mean else x
        return centred / (self.std + eps)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "m2": self.m2, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.m2 = float(state["m2"])
        self.count = int(state["count"])


def clip_rewards(x: Tensor, clip: float) -> Tensor:
    """Clamp rewards to [-clip, clip] (TRL's former PPO ``score_clip``), a guard against outlier scores."""
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    return x.clamp(-clip, clip)
