"""The experience maker: one rollout turned into everything an online RL update trains on.

One call of :func:`make_experience` is the "rollout" half of a step, for any algorithm:

1. sample ``group_size`` responses per prompt (PPO: one) with the policy adapter active
   (`trainers.online.rollout.sample`);
2. forward passes without gradients, in the training precision, ``forward_batch_size``
   rows at a time: policy log-probs (``old_logps``), reference log-probs, and the values
   when the algorithm's advantage estimator needs them;
3. the reward models and functions score each answer (`rollout.score_responses`);
4. score shaping: running normalisation, clipping, the missing-EOS penalty;
5. the algorithm's advantages:
   - token level (PPO, `advantages.GAEEstimator`): per-token rewards (KL penalty on every token, the
     score on the last), optionally whitened, then GAE and advantage whitening;
   - sequence level (GRPO, RLOO, REINFORCE++: `advantages.GroupEstimator`): one reward per answer
     (minus β · its summed log-ratio to the reference when the KL goes in the reward), one advantage
     per answer from its group, the same on each of its tokens.

Notation: B responses on this process (prompts x group size, prompt-major), P prompt tokens
(left-padded), R response tokens (right-padded). Every tensor of an `Experience` is on the models' device (`PPOModels.device`),
so the update indexes its minibatches there without copies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Record
from alignkit.errors import TrainingError
from alignkit.losses.advantages import RunningMoments, clip_rewards, per_token_rewards
from alignkit.losses.group import group_stats
from alignkit.losses.kl import kl_penalty
from alignkit.losses.masked import masked_mean, masked_whiten
from alignkit.rewards.encoding import as_conversation
from alignkit.rewards.ensemble import RewardSet
from alignkit.trainers.online.advantages import AdvantageEstimator, GroupEstimator, gae_estimator
from alignkit.trainers.online.config import OnlineConfig
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.models import PPOModels
from alignkit.trainers.online.rollout import Rollout, chunks, sample, score_responses


@dataclass
class Experience:
    """One rollout, everything the update needs. Masks are True on real tokens."""

    sequence_ids: Tensor  # (B, P + R) prompt (left-padded) then response (right-padded)
    sequence_mask: Tensor  # (B, P + R) bool
    response_ids: Tensor  # (B, R)
    response_mask: Tensor  # (B, R) bool, EOS included when the response ended
    old_logps: Tensor  # (B, R) log π_old(y_t), τ-tempered, 0 on padding
    ref_logps: Tensor  # (B, R) log ρ(y_t), τ-tempered, 0 on padding
    values: Tensor | None  # (B, R) V(s_t) from the rollout, 0 on padding; None without a value model
    rewards: Tensor  # (B, R) per-token rewards
    advantages: Tensor  # (B, R) whitened when configured
    returns: Tensor  # (B, R) λ-returns, the value targets (sequence level: the advantages)
    scores: Tensor  # (B,) the score that entered the reward (normalised, clipped, penalised); NaN: no reward
    finished: Tensor  # (B,) bool, True when the response emitted EOS
    group_size: int = 1  # answers per prompt (rows g·G ... g·G + G - 1 answer prompt g)
    sequence_advantages: Tensor | None = None  # (B,) sequence level only: one advantage per answer
    per_source: dict[str, Tensor] = field(default_factory=dict)  # each reward member's raw (B,) scores
    metrics: dict[str, float] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    response_tokens: list[list[int]] = field(default_factory=list)  # without the EOS token


@torch.no_grad()
def make_experience(
    models: PPOModels,
    rewards: RewardSet,
    records: list[Record] | list[Any],
    cfg: OnlineConfig,
    step: int,
    kl_coef: float,
    moments: RunningMoments,
    dist: Dist,
    suffix_ids: list[int],
    gold: Any = None,
    estimator: AdvantageEstimator | None = None,
) -> Experience:
    """Sample, score and compute advantages for the prompts of ``records`` (this process's shard of the step).

    ``records``: prompt records (their columns reach reward functions), or bare prompts.

    ``gold``: an optional `evaluation.compare.PointScorer` logged as ``gold/score``; it never enters the reward.
    ``estimator``: the algorithm's advantage estimator (`advantages`); None means PPO's GAE as ``cfg``
    configures it. ``kl_coef``: β of the KL in the reward (0 when the algorithm puts it in the loss).
    """
    estimator = estimator if estimator is not None else gae_estimator(cfg)
    group = estimator.group_size
    records = [r if isinstance(r, Record) else Record(prompt=as_conversation(r)) for r in records]
    prompts = [r.prompt for r in records]
    t0 = time.perf_counter()
    rollout = sample(models, prompts, cfg, step, dist, n=group)
    t_gen = time.perf_counter() - t0
    old_logps, ref_logps, values = _forward_passes(models, rollout, cfg, step, estimator.needs_value, group)
    raw_scores, per_model = score_responses(models, rewards, records, rollout, suffix_ids)
    t_score = time.perf_counter() - t0 - t_gen
    scores = shape_scores(raw_scores, rollout.finished, cfg, moments, dist)

    seq_advantages = None
    if estimator.level == "sequence":
        kl, rewards_t, seq_advantages = _sequence_advantages(
            estimator, scores, old_logps, ref_logps, rollout.response_mask, kl_coef
        )
        advantages = torch.where(
            rollout.response_mask, seq_advantages[:, None], torch.zeros((), device=scores.device)
        )
        returns = advantages
    else:  # per-token rewards, then the estimator's advantages and returns
        scores = torch.nan_to_num(
            scores, nan=0.0
        )  # PPO: an answer without a reward (a function's None) scores 0
        kl, rewards_t = kl_shaped_rewards(scores, old_logps, ref_logps, rollout.response_mask, cfg, kl_coef)
        advantages, returns = estimator(rewards_t, values, rollout.response_mask)

    metrics = _metrics(rollout, old_logps, ref_logps, kl, kl_coef, raw_scores, scores, rewards_t)
    metrics.update(_rollout_metrics(rollout, values, returns, per_model, t_gen, t_score))
    if estimator.level == "sequence":
        metrics.update(_group_metrics(raw_scores, group))
    if gold is not None:
        metrics["gold/score"] = _gold_score(gold, prompts, rollout)
    if cfg.score_norm != "none":
        metrics["reward/running_mean"] = moments.mean
        metrics["reward/running_std"] = moments.std
    return Experience(
        sequence_ids=rollout.sequence_ids,
        sequence_mask=rollout.sequence_mask,
        response_ids=rollout.response_ids,
        response_mask=rollout.response_mask,
        old_logps=old_logps,
        ref_logps=ref_logps,
        values=values,
        rewards=rewards_t,
        advantages=advantages,
        returns=returns,
        scores=scores,
        finished=rollout.finished,
        group_size=group,
        sequence_advantages=seq_advantages,
        per_source=per_model,
        metrics=metrics,
        texts=rollout.batch.texts,
        response_tokens=rollout.response_tokens(),
    )


def _forward_passes(
    models: PPOModels, rollout: Rollout, cfg: OnlineConfig, step: int, with_values: bool, group: int = 1
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(old_logps, ref_logps, values), each (B, R) and 0 on padding; values None unless ``with_values``.

    No-grad forwards in the training precision (Huang et al.: same temperature everywhere).
    The policy's log-probs are the sampler's unless --recompute-logprobs. With answers in groups of
    ``group`` (and ``cfg.share_prompts``) each group's prompt is forwarded once (`packed`).
    """
    logps_of = _logps_function(models, cfg, group)
    ids, mask, response_ids = rollout.sequence_ids, rollout.sequence_mask, rollout.response_ids
    response_mask, device = rollout.response_mask, rollout.sequence_ids.device
    B, R = response_ids.shape
    old_logps = torch.zeros(B, R, device=device)
    ref_logps = torch.zeros(B, R, device=device)
    values = torch.zeros(B, R, device=device) if with_values else None
    for rows in chunks(B, cfg.forward_batch_size):
        if cfg.recompute_logprobs:
            with models.as_policy() as policy:
                old_logps[rows] = logps_of(policy, rollout, rows)
        with models.as_reference() as reference:
            ref_logps[rows] = logps_of(reference, rollout, rows)
        if values is not None:
            with models.as_value() as value_model:
                values[rows] = models.values(value_model, ids[rows], mask[rows], R)
    if not cfg.recompute_logprobs:
        assert rollout.packed.token_logps is not None
        old_logps = rollout.packed.token_logps.to(device, copy=True)
    zero = torch.zeros((), device=device)
    old_logps = torch.where(response_mask, old_logps, zero)
    ref_logps = torch.where(response_mask, ref_logps, zero)
    if values is not None:
        values = torch.where(response_mask, values, zero)
        if not torch.isfinite(values).all():
            raise TrainingError(
                f"the value head returned NaN/inf at step {step}: the value model diverged. The last checkpoint "
                "is intact (--resume continues from it); lower --lr or --vf-coef, or use --value-clip-range"
            )
    return old_logps, ref_logps, values


def _logps_function(models: PPOModels, cfg: OnlineConfig, group: int) -> Any:
    """(model, rollout, rows) -> (b, R) log-probs of those rows: packed by group where it can be, else plain."""
    from alignkit.trainers.online.packed import can_pack, packed_token_logps

    def plain(model: Any, rollout: Rollout, rows: slice) -> Tensor:
        r = rollout
        return models.token_logps(
            model, r.sequence_ids[rows], r.sequence_mask[rows], r.response_ids[rows], cfg.temperature
        )[0]

    def packed(model: Any, rollout: Rollout, rows: slice) -> Tensor:
        if not can_pack(model):
            return plain(model, rollout, rows)
        r = rollout
        groups = [i // group for i in range(rows.start, rows.stop)]
        return packed_token_logps(
            models, model, r.sequence_ids[rows], r.sequence_mask[rows], r.response_ids[rows], r.response_mask[rows],
            groups, cfg.temperature,
        )[0]  # fmt: skip

    return packed if group > 1 and getattr(cfg, "share_prompts", False) else plain


def shape_scores(
    raw_scores: Tensor, finished: Tensor, cfg: OnlineConfig, moments: RunningMoments, dist: Dist
) -> Tensor:
    """(B,) raw scores -> (B,) the scores that enter the reward; NaN (no reward) stays NaN.

    Normalise (running statistics over every process, of the scored rows; updates ``moments``), clip,
    penalise a missing EOS.
    """
    scores = raw_scores.clone()
    if cfg.score_norm != "none":
        gathered = dist.gather(raw_scores)
        moments.update(gathered[~torch.isnan(gathered)])
        scores = moments.normalize(scores, shift_mean=cfg.score_norm == "whiten")
    if cfg.score_clip is not None:
        scores = clip_rewards(scores, cfg.score_clip)
    if cfg.missing_eos_penalty is not None:
        scores = torch.where(finished, scores, scores - cfg.missing_eos_penalty)
    return scores


def kl_shaped_rewards(
    scores: Tensor,
    old_logps: Tensor,
    ref_logps: Tensor,
    response_mask: Tensor,
    cfg: Any,
    kl_coef: float,
) -> tuple[Tensor, Tensor]:
    """(kl, rewards), each (B, R): the per-token KL penalty term and the per-token rewards.

    ``rewards = -kl_coef · kl`` on every token plus the (B,) score on the last; scaled by their
    standard deviation (not shifted) with --whiten-rewards.
    """
    zero = torch.zeros((), device=old_logps.device)
    kl = torch.where(response_mask, kl_penalty(old_logps, ref_logps, cfg.kl_estimator), zero)
    rewards_t = per_token_rewards(scores, kl, response_mask, kl_coef)
    if cfg.whiten_rewards:
        rewards_t = masked_whiten(rewards_t, response_mask, shift_mean=False)
    return kl, rewards_t


def _sequence_advantages(
    estimator: GroupEstimator,
    scores: Tensor,
    old_logps: Tensor,
    ref_logps: Tensor,
    response_mask: Tensor,
    kl_coef: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """(kl (B, R), rewards (B, R), advantages (B,)) of a critic-free rollout.

    The KL in the reward (``kl_coef`` > 0: RLOO, Ahmadian et al. 2024; TRL's RLOOTrainer) is the answer's
    summed k1 log-ratio to the reference, r_i - β Σ_t (log π_old - log π_ref), before the baseline. The
    per-token ``rewards`` (the KL term on every token, the score on the last) are for the logs only.
    """
    zero = torch.zeros((), device=old_logps.device)
    kl = torch.where(response_mask, old_logps - ref_logps, zero)
    shaped = scores - kl_coef * kl.sum(1) if kl_coef > 0 else scores
    advantages = estimator(shaped)
    rewards_t = per_token_rewards(torch.nan_to_num(scores), kl, response_mask, kl_coef)
    return kl, rewards_t, advantages


def _metrics(
    rollout: Rollout,
    old_logps: Tensor,
    ref_logps: Tensor,
    kl: Tensor,
    kl_coef: float,
    raw_scores: Tensor,
    scores: Tensor,
    rewards_t: Tensor,
) -> dict[str, float]:
    """The rollout's KL and reward statistics (this process's rows)."""
    response_mask, finished = rollout.response_mask, rollout.finished
    zero = torch.zeros((), device=old_logps.device)
    k1 = torch.where(response_mask, old_logps - ref_logps, zero)
    seq_kl = k1.sum(1)  # (B,) per-sequence KL estimate in nats (k1, summed over tokens)
    seq_k3 = torch.where(response_mask, kl_penalty(old_logps, ref_logps, "k3"), zero).sum(1)
    B = response_mask.shape[0]
    return {
        "kl/ref": seq_kl.mean().item(),
        "kl/ref_k3": seq_k3.mean().item(),
        "kl/coef": float(kl_coef),
        "kl/penalty": (kl_coef * kl.sum(1)).mean().item(),
        "reward/score": _nan_mean(raw_scores),
        "reward/score_std": _nan_std(raw_scores) if B > 1 else 0.0,
        "reward/score_used": _nan_mean(scores),
        "reward/total": rewards_t.sum(1).mean().item(),
        "reward/missing_eos_frac": (~finished).float().mean().item(),
    }


def _rollout_metrics(
    rollout: Rollout,
    values: Tensor | None,
    returns: Tensor,
    per_model: dict[str, Tensor],
    t_gen: float,
    t_score: float,
) -> dict[str, float]:
    """The values' (when there are any), the sampler's, the timings and each reward model's mean score."""
    metrics: dict[str, float] = {}
    if values is not None:
        metrics["value/mean"] = masked_mean(values, rollout.response_mask).item()
        metrics["value/returns_mean"] = masked_mean(returns, rollout.response_mask).item()
    metrics.update(
        {
            "gen/prompts_truncated": float(rollout.batch.truncated_prompts),
            "gen/response_tokens": rollout.response_mask.sum(1).float().sum().item(),
            "perf/generate_seconds": t_gen,
            "perf/score_seconds": t_score,
            "perf/tokens_per_s": float(rollout.batch.stats.get("tokens_per_s", 0.0)),
        }
    )
    for name, s in per_model.items():  # NaN: a reward function's None, left out of the mean and std
        s = s.float()
        scored = s[~torch.isnan(s)]
        metrics[f"reward/{name}"] = _nan_mean(s)
        metrics[f"reward/{name}_std"] = _nan_std(s)
        if scored.numel() < s.numel() or math.isnan(metrics[f"reward/{name}"]):
            metrics[f"reward/{name}_none_frac"] = 1.0 - scored.numel() / max(s.numel(), 1)
    return metrics


def _nan_mean(x: Tensor) -> float:
    """The mean of the non-NaN entries (NaN: no reward); NaN when there are none."""
    kept = x[~torch.isnan(x)]
    return kept.float().mean().item() if kept.numel() else math.nan


def _nan_std(x: Tensor) -> float:
    """The population std of the non-NaN entries; 0 with fewer than two."""
    kept = x[~torch.isnan(x)]
    return kept.float().std(unbiased=False).item() if kept.numel() > 1 else 0.0


def _group_metrics(raw_scores: Tensor, group_size: int) -> dict[str, float]:
    """The groups' learning signal: the fraction of groups whose rewards are all equal (every advantage 0),
    the mean std of the rewards within a group, and the fraction of answers without a reward."""
    stats = group_stats(raw_scores.float().cpu(), group_size)
    within = stats.std[~torch.isnan(stats.std)]
    return {
        "reward/frac_all_equal": stats.all_equal.float().mean().item(),
        "reward/group_std": within.mean().item() if within.numel() else 0.0,
        "reward/none_frac": torch.isnan(raw_scores).float().mean().item(),
    }


def _gold_score(gold: Any, prompts: list[Any], rollout: Rollout) -> float:
    """The mean held-out gold score of the rollout's responses (logged only)."""
    from alignkit.evaluation.policy import prompt_text
    from alignkit.rewards.encoding import as_conversation

    n = rollout.batch.n  # answers per prompt (a GRPO group), prompt-major
    texts = [prompt_text(as_conversation(p)) for p in prompts for _ in range(n)]
    gold_scores = gold.score(texts, rollout.batch.texts, rollout.packed.finished.tolist())
    return sum(gold_scores) / max(len(gold_scores), 1)


__all__ = ["Experience", "kl_shaped_rewards", "make_experience", "shape_scores"]
