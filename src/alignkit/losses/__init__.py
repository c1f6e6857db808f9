"""Loss and advantage maths as pure functions: tensors in, tensors out.

Losses return ``(loss, stats)``: ``loss`` is a 0-d tensor that carries the
gradient, ``stats`` maps namespaced metric names (``reward/accuracy``,
``ppo/clipfrac``, ...) to *detached* 0-d tensors. Stats stay tensors so that a
trainer can average or gather them across devices before calling ``.item()``
once per logging step (a ``.item()`` here would force a device sync per metric).

Helpers (masked means, GAE, KL estimators, log-probabilities) return plain
tensors. Nothing here touches a model, an optimiser or a file.
"""

from __future__ import annotations

from alignkit.losses.ppo import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    clip_rewards,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    kl_penalty,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_rewards,
)
from alignkit.losses.reward import (
    batch_ranking_pairs,
    bradley_terry_loss,
    centering_loss,
    ranking_loss,
    ranking_pairs,
)

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "RunningMoments",
    "batch_ranking_pairs",
    "bradley_terry_loss",
    "centering_loss",
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
    "ranking_loss",
    "ranking_pairs",
]
