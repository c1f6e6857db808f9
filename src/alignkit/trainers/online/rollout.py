"""The experience maker: sample responses, score them, and turn scores into advantages.

One call of :func:`make_experience` is the "rollout" half of a PPO step:

1. sample one response per prompt with the policy adapter active (`alignkit.sampling.generate`,
   the project's one sampler; it stops each row at its first EOS, so nothing after the
   stop token is ever kept), at temperature τ with a seed derived from (seed, step, rank);
2. forward passes without gradients, in the training precision, ``forward_batch_size``
   rows at a time: policy log-probs (``old_logps``), reference log-probs, values;
3. the reward models score prompt + response at its last real token;
4. score shaping: running normalisation, clipping, the missing-EOS penalty;
5. per-token rewards (KL penalty on every token, the score on the last), GAE,
   advantage whitening.

Notation: B prompts on this process, P prompt tokens (left-padded), R response tokens
(right-padded). Every tensor of an `Experience` is on the models' device (`PPOModels.device`),
so the update indexes its minibatches there without copies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignkit.errors import TrainingError
from alignkit.losses.ppo import (
    RunningMoments,
    clip_rewards,
    gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    per_token_rewards,
)
from alignkit.rewards.ensemble import RewardSet, TokenBatch, pad_rows
from alignkit.sampling.generate import SamplingSettings, generate
from alignkit.trainers.online.config import PPOConfig
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.models import PPOModels


@dataclass
class Experience:
    """One rollout, everything the PPO update needs. Masks are True on real tokens."""

    sequence_ids: Tensor  # (B, P + R) prompt (left-padded) then response (right-padded)
    sequence_mask: Tensor  # (B, P + R) bool
    response_ids: Tensor  # (B, R)
    response_mask: Tensor  # (B, R) bool, EOS included when the response ended
    old_logps: Tensor  # (B, R) log π_old(y_t), τ-tempered, 0 on padding
    ref_logps: Tensor  # (B, R) log ρ(y_t), τ-tempered, 0 on padding
    values: Tensor  # (B, R) V(s_t) from the rollout, 0 on padding
    rewards: Tensor  # (B, R) per-token rewards
    advantages: Tensor  # (B, R) whitened when configured
    returns: Tensor  # (B, R) λ-returns, the value targets
    scores: Tensor  # (B,) the score that entered the reward (normalised, clipped, penalised)
    finished: Tensor  # (B,) bool, True when the response emitted EOS
    metrics: dict[str, float] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    response_tokens: list[list[int]] = field(default_factory=list)  # without the EOS token


def rollout_seed(seed: int, step: int, rank: int) -> int:
    """The sampling seed of one rollout: the same (seed, step, rank) always samples the same tokens.

    This is what makes a resumed run sample exactly what the uninterrupted run did.
    """
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**62)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def make_experience(
    models: PPOModels,
    rewards: RewardSet,
    prompts: list[Any],
    cfg: PPOConfig,
    step: int,
    kl_coef: float,
    moments: RunningMoments,
    dist: Dist,
    suffix_ids: list[int],
    gold: Any = None,
) -> Experience:
    """Sample, score and compute advantages for ``prompts`` (this process's shard of the step).

    ``gold``: an optional `evaluation.compare.PointScorer` logged as ``gold/score``; it never enters the reward.
    """
    t0 = time.perf_counter()
    settings = SamplingSettings(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=rollout_seed(cfg.seed, step, dist.rank),
        return_logprobs=not cfg.recompute_logprobs,
        batch_size=max(len(prompts), 1),
        max_prompt_tokens=cfg.max_length - cfg.max_new_tokens,
    )
    with models.as_policy() as policy:
        batch = generate(policy, models.tokenizer, prompts, settings)
    t_gen = time.perf_counter() - t0
    packed = batch.to_tensors()
    device = models.device  # the rollout lives where the models are (no-op moves on the CPU)
    ids, mask = packed.sequence_ids.to(device), packed.sequence_mask.to(device)
    response_ids, response_mask = packed.response_ids.to(device), packed.response_mask.to(device)
    B, R = response_ids.shape

    # 2. no-grad forwards in the training precision (Huang et al.: same temperature everywhere)
    old_logps = torch.zeros(B, R, device=device)
    ref_logps = torch.zeros(B, R, device=device)
    values = torch.zeros(B, R, device=device)
    for rows in _chunks(B, cfg.forward_batch_size):
        if cfg.recompute_logprobs:
            with models.as_policy() as policy:
                old_logps[rows] = models.token_logps(
                    policy, ids[rows], mask[rows], response_ids[rows], cfg.temperature
                )[0]
        with models.as_reference() as reference:
            ref_logps[rows] = models.token_logps(
                reference, ids[rows], mask[rows], response_ids[rows], cfg.temperature
            )[0]
        with models.as_value() as value_model:
            values[rows] = models.values(value_model, ids[rows], mask[rows], R)
    if not cfg.recompute_logprobs:
        assert packed.token_logps is not None
        old_logps = packed.token_logps.to(device, copy=True)
    zero = torch.zeros((), device=device)
    old_logps = torch.where(response_mask, old_logps, zero)
    ref_logps = torch.where(response_mask, ref_logps, zero)
    values = torch.where(response_mask, values, zero)
    if not torch.isfinite(values).all():
        raise TrainingError(
            f"the value head returned NaN/inf at step {step}: the value model diverged. The last checkpoint is "
            "intact (--resume continues from it); lower --lr or --vf-coef, or use --value-clip-range"
        )

    # 3. reward models: prompt + response (+ the template's suffix after EOS), scored at the last real token
    rows_for_rm = []
    for i, g in enumerate(batch.generations):
        tail = suffix_ids if g.finished else []
        rows_for_rm.append(list(g.prompt_ids) + list(g.response_ids) + tail)
        assert g.prompt_index == i
    rm_ids, rm_mask = pad_rows(rows_for_rm, models.tokenizer.pad_token_id)
    token_batch = TokenBatch(rm_ids, rm_mask.bool(), models.tokenizer)
    finished = packed.finished.to(device)
    raw_scores, per_model = rewards.score(prompts, batch.texts, token_batch, packed.finished.tolist())
    raw_scores = raw_scores.to(device)  # reward models return CPU scores
    t_score = time.perf_counter() - t0 - t_gen

    # 4. score shaping: normalise (running statistics over every process), clip, penalise a missing EOS
    scores = raw_scores.clone()
    if cfg.score_norm != "none":
        moments.update(dist.gather(raw_scores))
        scores = moments.normalize(scores, shift_mean=cfg.score_norm == "whiten")
    if cfg.score_clip is not None:
        scores = clip_rewards(scores, cfg.score_clip)
    if cfg.missing_eos_penalty is not None:
        scores = torch.where(finished, scores, scores - cfg.missing_eos_penalty)

    # 5. per-token rewards, GAE, whitening
    kl = torch.where(response_mask, kl_penalty(old_logps, ref_logps, cfg.kl_estimator), zero)
    rewards_t = per_token_rewards(scores, kl, response_mask, kl_coef)
    if cfg.whiten_rewards:
        rewards_t = masked_whiten(rewards_t, response_mask, shift_mean=False)
    advantages, returns = gae(rewards_t, values, response_mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, response_mask, shift_mean=True)

    k1 = torch.where(response_mask, old_logps - ref_logps, zero)
    seq_kl = k1.sum(1)  # (B,) per-sequence KL estimate in nats (k1, summed over tokens)
    seq_k3 = torch.where(response_mask, kl_penalty(old_logps, ref_logps, "k3"), zero).sum(1)
    lengths = response_mask.sum(1).float()
    metrics = {
        "kl/ref": seq_kl.mean().item(),
        "kl/ref_k3": seq_k3.mean().item(),
        "kl/coef": float(kl_coef),
        "kl/penalty": (kl_coef * kl.sum(1)).mean().item(),
        "reward/score": raw_scores.mean().item(),
        "reward/score_std": raw_scores.std(unbiased=False).item() if B > 1 else 0.0,
        "reward/score_used": scores.mean().item(),
        "reward/total": rewards_t.sum(1).mean().item(),
        "reward/missing_eos_frac": (~finished).float().mean().item(),
        "value/mean": masked_mean(values, response_mask).item(),
        "value/returns_mean": masked_mean(returns, response_mask).item(),
        "gen/prompts_truncated": float(batch.truncated_prompts),
        "gen/response_tokens": lengths.sum().item(),
        "perf/generate_seconds": t_gen,
        "perf/score_seconds": t_score,
        "perf/tokens_per_s": float(batch.stats.get("tokens_per_s", 0.0)),
    }
    for name, s in per_model.items():
        metrics[f"reward/{name}"] = s.mean().item()
    if gold is not None:
        from alignkit.evaluation.policy import prompt_text
        from alignkit.rewards.ensemble import as_conversation

        texts = [prompt_text(as_conversation(p)) for p in prompts]
        gold_scores = gold.score(texts, batch.texts, packed.finished.tolist())
        metrics["gold/score"] = sum(gold_scores) / max(len(gold_scores), 1)
    if cfg.score_norm != "none":
        metrics["reward/running_mean"] = moments.mean
        metrics["reward/running_std"] = moments.std
    response_tokens = [
        [int(t) for t in g.response_ids[: len(g.response_ids) - (1 if g.finished else 0)]]
        for g in batch.generations
    ]
    return Experience(
        sequence_ids=ids,
        sequence_mask=mask,
        response_ids=response_ids,
        response_mask=response_mask,
        old_logps=old_logps,
        ref_logps=ref_logps,
        values=values,
        rewards=rewards_t,
        advantages=advantages,
        returns=returns,
        scores=scores,
        finished=finished,
        metrics=metrics,
        texts=batch.texts,
        response_tokens=response_tokens,
    )


EVAL_SEED_OFFSET = 998_244_353  # eval samples draw from their own seeded stream, the same at every evaluation


@torch.no_grad()
def evaluate_policy(
    models: PPOModels, rewards: RewardSet, prompts: list[Any], cfg: PPOConfig, suffix_ids: list[int]
) -> dict[str, float]:
    """Mean reward-model scores and KL to the reference of fresh samples on held-out prompts.

    Sampled exactly as rollouts are (same temperature), with a fixed seed, so evaluations at
    different steps differ only by the policy. Nothing here changes training state.
    """
    out: dict[str, list[float]] = {}
    for rows in _chunks(len(prompts), max(cfg.batch_size, cfg.forward_batch_size)):
        chunk = prompts[rows]
        settings = SamplingSettings(
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            seed=rollout_seed(cfg.seed + EVAL_SEED_OFFSET, rows.start, 0),
            batch_size=len(chunk),
            max_prompt_tokens=cfg.max_length - cfg.max_new_tokens,
        )
        with models.as_policy() as policy:
            batch = generate(policy, models.tokenizer, chunk, settings)
        packed = batch.to_tensors()
        device = models.device
        ids, mask, response_ids, response_mask = (
            packed.sequence_ids.to(device), packed.sequence_mask.to(device),
            packed.response_ids.to(device), packed.response_mask.to(device),
        )  # fmt: skip
        with models.as_policy() as policy:
            logps = models.token_logps(policy, ids, mask, response_ids, cfg.temperature)[0]
        with models.as_reference() as reference:
            ref_logps = models.token_logps(reference, ids, mask, response_ids, cfg.temperature)[0]
        kl = torch.where(response_mask, logps - ref_logps, torch.zeros((), device=device)).sum(1)
        rm_rows = [
            list(g.prompt_ids) + list(g.response_ids) + (suffix_ids if g.finished else []) for g in batch
        ]
        rm_ids, rm_mask = pad_rows(rm_rows, models.tokenizer.pad_token_id)
        combined, per_model = rewards.score(
            chunk, batch.texts, TokenBatch(rm_ids, rm_mask.bool(), models.tokenizer), packed.finished.tolist()
        )
        values = {
            "reward/score": combined,
            "kl/ref": kl,
            "gen/length": response_mask.sum(1).float(),
            "gen/truncated_frac": (~packed.finished).float(),
            **{f"reward/{k}": v for k, v in per_model.items()},
        }
        for key, v in values.items():
            out.setdefault(key, []).extend(v.tolist())
    return {k: sum(v) / len(v) for k, v in out.items() if v}
