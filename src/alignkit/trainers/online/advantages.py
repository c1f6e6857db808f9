"""Advantage estimators: the seam where an online RL algorithm turns a rollout's rewards into advantages.

The rollout loop (`trainers.online.experience.make_experience`) is the same for every algorithm:
sample, score, log-probs of the policy and the reference, per-token KL-shaped rewards. Then it
hands those rewards to the algorithm's `AdvantageEstimator` and stores what comes back in the
`Experience` that the algorithm's update trains on.

An estimator says whether it needs a value model (``needs_value``): if so, the rollout runs the
value forward passes and passes V(s_t) in; if not (the critic-free algorithms: GRPO, RLOO,
REINFORCE++), the value forwards are skipped and ``values`` is None.

Today there is one estimator, PPO's (:class:`GAEEstimator`): GAE over the value model's
estimates, then advantage whitening. The maths are the pure functions of `alignkit.losses.advantages`
(`gae`) and `alignkit.losses.masked` (`masked_whiten`).

Notation: B responses, R response tokens (right-padded); masks are True on real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from alignkit.losses.advantages import gae
from alignkit.losses.masked import masked_whiten
from alignkit.trainers.online.config import PPOConfig


class AdvantageEstimator(Protocol):
    """Per-token rewards (and values) of one rollout -> (advantages, returns)."""

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


__all__ = ["AdvantageEstimator", "GAEEstimator", "gae_estimator"]
