"""The rollout: sample responses with the policy and score them with the reward models.

- :func:`sample`: ``n`` responses per prompt (PPO: 1; GRPO/RLOO: the group) with the policy adapter active (`alignkit.sampling.generate`,
  the project's one sampler; it stops each row at its first EOS, so nothing after the stop token is
  ever kept; the n answers of a prompt share its KV prompt store), at temperature τ with a seed derived from (seed, step, rank) (:func:`rollout_seed`);
  the result, a `Rollout`, holds the packed tensors on the models' device;
- :func:`score_responses`: the reward models score prompt + response (+ the template's suffix after
  EOS) at the last real token;
- :func:`evaluate_policy`: the same two on held-out prompts with a fixed seed, plus the KL to the reference.

What a training step makes of a rollout (log-probs, KL-shaped rewards, advantages) is
`trainers.online.experience`. Notation: B responses on this process (prompts x n, prompt-major), P prompt
tokens (left-padded), R response tokens (right-padded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Record
from alignkit.rewards.encoding import pad_rows
from alignkit.rewards.ensemble import RewardSet, TokenBatch
from alignkit.rewards.functions import record_columns
from alignkit.sampling.generate import SamplingSettings, generate
from alignkit.sampling.results import GenerationBatch, PackedGenerations
from alignkit.trainers.online.config import OnlineConfig
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

    batch: GenerationBatch  # n generations per prompt, prompt-major (row i * n + j: answer j to prompt i)
    packed: PackedGenerations  # the same as right-padded tensors on the CPU (the sampler's log-probs too)
    sequence_ids: Tensor  # (B, P + R) prompt (left-padded) then response (right-padded)
    sequence_mask: Tensor  # (B, P + R) bool
    response_ids: Tensor  # (B, R)
    response_mask: Tensor  # (B, R) bool, EOS included when the response ended
    finished: Tensor  # (B,) bool, True when the response emitted EOS

    def response_tokens(self) -> list[list[int]]:
        """Each response's token ids without the EOS token."""
        return _without_eos(self.batch)


def sample(
    models: PPOModels, prompts: list[Any], cfg: OnlineConfig, step: int, dist: Dist, n: int = 1
) -> Rollout:
    """``n`` responses per prompt from the policy (prompt-major), with the seed of (seed, step, rank)."""
    settings = SamplingSettings(
        n=n,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=rollout_seed(cfg.seed, step, dist.rank),
        return_logprobs=not cfg.recompute_logprobs,
        batch_size=max(len(prompts) * n, 1),
        compile=cfg.compile,
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
    """Prompt + response (+ the template's suffix after EOS) token ids of each generation, in batch order."""
    return [
        list(g.prompt_ids) + list(g.response_ids) + (suffix_ids if g.finished else [])
        for g in batch.generations
    ]


def score_responses(
    models: PPOModels, rewards: RewardSet, records: list[Record], rollout: Rollout, suffix_ids: list[int]
) -> tuple[Tensor, dict[str, Tensor]]:
    """(B,) combined scores on the models' device (NaN where a reward function gave None), and each member's.

    The reward models score prompt + response (+ the template's suffix after EOS) at the last real token;
    the answers to one prompt share its forward where a model can (``groups``). Reward functions get the
    prompt records' columns, repeated per answer (`rewards.functions.record_columns`), and
    ``completion_ids``.
    """
    n = len(rollout.batch.generations) // max(len(records), 1)
    rm_ids, rm_mask = pad_rows(_reward_rows(rollout.batch, suffix_ids), models.tokenizer.pad_token_id)
    token_batch = TokenBatch(rm_ids, rm_mask.bool(), models.tokenizer)
    columns = {**record_columns(records, n), "completion_ids": rollout.response_tokens()}
    raw_scores, per_model = rewards.score(
        [r.prompt for r in records for _ in range(n)],
        rollout.batch.texts,
        token_batch,
        rollout.packed.finished.tolist(),
        groups=[i for i in range(len(records)) for _ in range(n)] if n > 1 else None,
        columns=columns,
    )
    return raw_scores.to(rollout.sequence_ids.device), per_model  # reward models return CPU scores


EVAL_SEED_OFFSET = 998_244_353  # eval samples draw from their own seeded stream, the same at every evaluation
EVAL_ROWS = 128  # most answers an evaluation decodes at once (the scoring passes go by training-size chunks)


@torch.no_grad()
def evaluate_policy(
    models: PPOModels, rewards: RewardSet, records: list[Record], cfg: OnlineConfig, suffix_ids: list[int]
) -> dict[str, float]:
    """Mean rewards and KL to the reference of fresh samples on held-out prompts.

    Sampled exactly as rollouts are (same temperature), with a fixed seed, so evaluations at
    different steps differ only by the policy; ``cfg.eval_samples`` answers per prompt (a group, which a
    pairwise judge compares). ``reward/score_stderr`` is the standard error of the mean reward over
    prompts (each prompt's answers averaged first). Nothing here changes training state.
    """
    n = int(getattr(cfg, "eval_samples", 1))
    out: dict[str, list[float]] = {}
    prompt_means: list[float] = []
    settings = SamplingSettings(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        seed=rollout_seed(cfg.seed + EVAL_SEED_OFFSET, 0, 0),
        n=n,
        batch_size=max(1, min(len(records) * n, EVAL_ROWS)),
        max_prompt_tokens=cfg.max_length - cfg.max_new_tokens,
        compile=cfg.compile,
    )
    with models.as_policy() as policy:  # every prompt in one call: the sampler keeps its rows full
        sampled = generate(policy, models.tokenizer, [r.prompt for r in records], settings)
    for rows in chunks(len(records), max(cfg.batch_size, cfg.forward_batch_size)):
        chunk_records = records[rows]
        chunk = [r.prompt for r in chunk_records]
        batch = GenerationBatch(sampled.generations[rows.start * n : rows.stop * n], n, sampled.pad_token_id)
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
            [p for p in chunk for _ in range(n)],
            batch.texts,
            TokenBatch(rm_ids, rm_mask.bool(), models.tokenizer),
            packed.finished.tolist(),
            groups=[i for i in range(len(chunk)) for _ in range(n)] if n > 1 else None,
            columns={**record_columns(chunk_records, n), "completion_ids": _without_eos(batch)},
        )
        for per_prompt in combined.view(len(chunk), n):
            scored = per_prompt[~torch.isnan(per_prompt)]
            if scored.numel():
                prompt_means.append(scored.mean().item())
        values = {
            "reward/score": combined,
            "kl/ref": kl,
            "gen/length": response_mask.sum(1).float(),
            "gen/truncated_frac": (~packed.finished).float(),
            **{f"reward/{k}": v for k, v in per_model.items()},
        }
        for key, v in values.items():
            out.setdefault(key, []).extend(v.tolist())
    means = {k: [x for x in v if not math.isnan(x)] for k, v in out.items()}  # a reward function's None
    result = {k: sum(v) / len(v) for k, v in means.items() if v}
    if len(prompt_means) > 1:
        result["reward/score_stderr"] = float(torch.tensor(prompt_means).std()) / math.sqrt(len(prompt_means))
    return result


def _without_eos(batch: GenerationBatch) -> list[list[int]]:
    """Each response's token ids without its stop token."""
    return [[int(t) for t in g.response_ids[: len(g.response_ids) - (1 if g.finished else 0)]] for g in batch]
