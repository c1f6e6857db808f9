"""The rollout: sample responses with the policy and score them with the reward models.

- :func:`sample`: one response per prompt with the policy adapter active (`alignkit.sampling.generate`,
  the project's one sampler; it stops each row at its first EOS, so nothing after the stop token is
  ever kept), at temperature τ with a seed derived from (seed, step, rank) (:func:`rollout_seed`);
  the result, a `Rollout`, holds the packed tensors on the models' device;
- :func:`score_responses`: the reward models score prompt + response (+ the template's suffix after
  EOS) at the last real token;
- :func:`evaluate_policy`: the same two on held-out prompts with a fixed seed, plus the KL to the reference.

What a training step makes of a rollout (log-probs, KL-shaped rewards, advantages) is
`trainers.online.experience`. Notation: B prompts on this process, P prompt tokens (left-padded),
R response tokens (right-padded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignkit.rewards.encoding import pad_rows
from alignkit.rewards.ensemble import RewardSet, TokenBatch
from alignkit.sampling.generate import SamplingSettings, generate
from alignkit.sampling.results import GenerationBatch, PackedGenerations
from alignkit.trainers.online.config import PPOConfig
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.models import PPOModels


def rollout_seed(seed: int, step: int, rank: int) -> int:
    """The sampling seed of one rollout: the same (seed, step, rank) always samples the same tokens.

    This is what makes a resumed run sample exactly what the uninterrupted run did.
    """
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**62)


def chunks(n: int, size: int) -> list[slice]:
    """Slices of at most ``size`` rows that cover ``range(n)`` in order."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass
class Rollout:
    """One sampled batch: the sampler's generations, and their tensors on the models' device."""

    batch: GenerationBatch  # one generation per prompt, in prompt order
    packed: PackedGenerations  # the same as right-padded tensors on the CPU (the sampler's log-probs too)
    sequence_ids: Tensor  # (B, P + R) prompt (left-padded) then response (right-padded)
    sequence_mask: Tensor  # (B, P + R) bool
    response_ids: Tensor  # (B, R)
    response_mask: Tensor  # (B, R) bool, EOS included when the response ended
    finished: Tensor  # (B,) bool, True when the response emitted EOS

    def response_tokens(self) -> list[list[int]]:
        """Each response's token ids without the EOS token."""
        return [
            [int(t) for t in g.response_ids[: len(g.response_ids) - (1 if g.finished else 0)]]
            for g in self.batch.generations
        ]


def sample(models: PPOModels, prompts: list[Any], cfg: PPOConfig, step: int, dist: Dist) -> Rollout:
    """One response per prompt from the policy, with the seed of (seed, step, rank)."""
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
    packed = batch.to_tensors()
    device = models.device  # the rollout lives where the models are (no-op moves on the CPU)
    return Rollout(
        batch=batch,
        packed=packed,
        sequence_ids=packed.sequence_ids.to(device),
        sequence_mask=packed.sequence_mask.to(device),
        response_ids=packed.response_ids.to(device),
        response_mask=packed.response_mask.to(device),
        finished=packed.finished.to(device),
    )


def _reward_rows(batch: GenerationBatch, suffix_ids: list[int]) -> list[list[int]]:
    """Prompt + response (+ the template's suffix after EOS) token ids of each generation, in prompt order."""
    rows = []
    for i, g in enumerate(batch.generations):
        tail = suffix_ids if g.finished else []
        rows.append(list(g.prompt_ids) + list(g.response_ids) + tail)
        assert g.prompt_index == i
    return rows


def score_responses(
    models: PPOModels, rewards: RewardSet, prompts: list[Any], rollout: Rollout, suffix_ids: list[int]
) -> tuple[Tensor, dict[str, Tensor]]:
    """(B,) combined scores on the models' device, and each reward model's (B,) scores.

    The reward models score prompt + response (+ the template's suffix after EOS) at the last real token.
    """
    rm_ids, rm_mask = pad_rows(_reward_rows(rollout.batch, suffix_ids), models.tokenizer.pad_token_id)
    token_batch = TokenBatch(rm_ids, rm_mask.bool(), models.tokenizer)
    raw_scores, per_model = rewards.score(
        prompts, rollout.batch.texts, token_batch, rollout.packed.finished.tolist()
    )
    return raw_scores.to(rollout.sequence_ids.device), per_model  # reward models return CPU scores


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
    for rows in chunks(len(prompts), max(cfg.batch_size, cfg.forward_batch_size)):
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
