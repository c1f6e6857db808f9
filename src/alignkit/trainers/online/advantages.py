"""Advantage estimators: the seam where an online RL algorithm turns a rollout's rewards into advantages.

The rollout loop (`trainers.online.experience.make_experience`) is the same for every algorithm:
sample, score, log-probs of the policy and the reference, per-token KL-shaped rewards. Then it
hands those rewards to the algorithm's `AdvantageEstimator` and stores what comes back in the
`Experience` that the algorithm's update trains on.

Two kinds of estimator, told apart by ``level``:

- ``"token"`` (`AdvantageEstimator`): per-token rewards (and values) -> per-token advantages and returns.
  PPO's :class:`GAEEstimator`: GAE over the value model's estimates, then advantage whitening
  (`alignkit.losses.advantages.gae`, `alignkit.losses.masked.masked_whiten`). It needs a value model
  (``needs_value``), so the rollout runs the value forward passes and passes V(s_t) in.
- ``"sequence"`` (:class:`GroupEstimator`): one reward per answer, ``group_size`` answers per prompt
  -> one advantage per answer, broadcast over its tokens by the experience maker. The critic-free
  algorithms: GRPO's group-normalised, RLOO's leave-one-out and REINFORCE++'s batch-normalised advantage
  (`alignkit.losses.group`). No value model: the value forwards are skipped.

Notation: B responses (prompts x group_size, prompt-major), R response tokens (right-padded); masks are
True on real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from alignkit.losses.advantages import gae
from alignkit.losses.group import (
    batch_normalized_advantages,
    group_normalized_advantages,
    leave_one_out_advantages,
)
from alignkit.losses.masked import masked_whiten
from alignkit.trainers.online.config import PPOConfig


class AdvantageEstimator(Protocol):
    """Per-token rewards (and values) of one rollout -> (advantages, returns)."""

    level: str
    """"token" for this protocol; a `GroupEstimator` says "sequence"."""
    group_size: int
    """Answers sampled per prompt (1 for PPO)."""
    needs_value: bool
    """True when the estimator reads the value model's V(s_t) (the rollout then computes it)."""

    def __call__(
        self, rewards: Tensor, values: Tensor | None, response_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Advantages and returns of one rollout.

        Args:
            rewards: (B, R) per-token rewards (KL penalty on every token, the score on the last).
            values: (B, R) V(s_t) from the rollout, 0 on padding; None when ``needs_value`` is False.
            response_mask: (B, R) bool.

        Returns:
            advantages, returns: (B, R) each, 0 on padding. ``returns`` are the value targets
            (an estimator without a value model returns whatever its update reads, or the advantages).
        """
        ...


@dataclass(frozen=True)
class GAEEstimator:
    """PPO's estimator: GAE(γ, λ) over the value model's estimates, then (optionally) whitened advantages.

    The returns are the λ-returns of the raw advantages (the value loss's targets); whitening
    touches the advantages only (Huang et al. 2024, arXiv:2403.17031).
    """

    gamma: float
    lam: float
    whiten: bool
    needs_value = True
    level = "token"
    group_size = 1

    def __call__(
        self, rewards: Tensor, values: Tensor | None, response_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(B, R) rewards, values and mask -> (B, R) advantages, returns (see `AdvantageEstimator`)."""
        assert values is not None, "GAE needs the value model's estimates"
        advantages, returns = gae(rewards, values, response_mask, self.gamma, self.lam)
        if self.whiten:
            advantages = masked_whiten(advantages, response_mask, shift_mean=True)
        return advantages, returns


def gae_estimator(cfg: PPOConfig) -> GAEEstimator:
    """The GAE estimator that ``cfg`` configures (--gamma, --lam, --whiten-advantages)."""
    return GAEEstimator(gamma=cfg.gamma, lam=cfg.lam, whiten=cfg.whiten_advantages)


@dataclass(frozen=True)
class GroupEstimator:
    """A critic-free estimator: (B,) sequence rewards, NaN where unscorable -> (B,) advantages.

    ``kind``: "group" (GRPO, Shao et al. 2024, with ``scale`` group | batch | none, the last being
    Dr. GRPO), "rloo" (Ahmadian et al. 2024; ``normalize`` whitens over the batch afterwards) or
    "reinforce++" (Hu 2025). An unscorable answer, and every answer of a group without two scorable
    ones, gets advantage 0 (`alignkit.losses.group`). Rows are prompt-major: rows g·G ... g·G + G - 1
    answer prompt g.
    """

    kind: str
    group_size: int
    scale: str = "group"
    normalize: bool = False
    needs_value = False
    level = "sequence"

    def __call__(self, scores: Tensor) -> Tensor:
        """(B,) rewards -> (B,) advantages."""
        if self.kind == "group":
            return group_normalized_advantages(scores, self.group_size, self.scale)
        if self.kind == "rloo":
            return leave_one_out_advantages(scores, self.group_size, normalize=self.normalize)
        if self.kind == "reinforce++":
            return batch_normalized_advantages(scores)
        raise ValueError(f"unknown advantage estimator {self.kind!r}")


__all__ = ["AdvantageEstimator", "GAEEstimator", "GroupEstimator", "gae_estimator"]
