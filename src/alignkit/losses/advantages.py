"""From rewards to advantages: token-level RLHF rewards, GAE, reward normalisation and clipping.

Notation: B, T batch size and tokens per row (padded); m_t ``response_mask`` (B, T),
True on real response tokens; r(x, y) the reward model's score of a whole response,
``scores`` (B,); β the KL coefficient; V_t the value estimate at token t, ``values``
(B, T); γ, λ discount and GAE parameter; A_t, R_t advantage and return (value
target), (B, T).

Rewards, advantages and returns are *targets*: the functions that build them run
under ``torch.no_grad``. Implementation details follow Huang et al. 2024, "The N+
Implementation Details of RLHF with PPO: A Case Study on TL;DR Summarization".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "RunningMoments",
    "clip_rewards",
    "gae",
    "per_token_rewards",
]


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
        kl: (B, T) per-token KL estimate, see :func:`alignkit.losses.kl.kl_penalty`.
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

    Whiten the advantages (:func:`alignkit.losses.masked.masked_whiten`) *after* this call: the returns
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

    :meth:`normalize` divides by the running std only once it is meaningful: at least two
    values and a std of at least ``min_std`` (1e-4; reward-model scores are logits of order 1).
    Before that (one score so far, or a first batch of equal scores) it leaves the scale alone.
    TRL's former PPOTrainer divided by ``std + finfo(float32).eps`` (``trl/core.py``
    ``RunningMoments``, ``PPOTrainer.step``) and OpenRLHF clamps a reward std at 1e-8
    (``RewardModelTrainer.evaluate``): both multiply equal first scores by ~1e7-1e8.
    """

    MIN_STD = 1e-4

    def __init__(self, min_std: float = MIN_STD) -> None:
        self.mean = 0.0
        self.m2 = 0.0
        self.count = 0
        self.min_std = min_std

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

    @property
    def scale(self) -> float:
        """What :meth:`normalize` divides by: the std once meaningful (see the class doc), else 1."""
        std = self.std
        return std if self.count > 1 and std >= self.min_std else 1.0

    def normalize(self, x: Tensor, shift_mean: bool = True) -> Tensor:
        """``(x - mean) / scale``, or ``x / scale`` when not ``shift_mean`` (:attr:`scale`: std, or 1)."""
        centred = x - self.mean if shift_mean else x
        return centred / self.scale

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
