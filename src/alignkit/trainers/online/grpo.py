"""`alignkit grpo` and `alignkit rloo`: the critic-free algorithms on the online RL loop.

One step (Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300, sec. 4; Ahmadian et al. 2024, arXiv:2402.14740;
TRL 1.16's ``GRPOTrainer`` and ``RLOOTrainer``):

1. rollout (`experience.make_experience`): G answers to each prompt from the policy (sharing the
   prompt's KV store), scored by the reward models and functions; the reference's log-probs; one
   advantage per answer from its group (`advantages.GroupEstimator`: GRPO's group-normalised, RLOO's
   leave-one-out or REINFORCE++'s batch-normalised), with β · KL subtracted from the reward first
   when ``--kl-in reward``;
2. update (:func:`group_update`): ``num_iterations`` passes over the rollout, each shuffled and cut into
   ``num_mini_batches`` optimizer steps (each in ``grad_accum`` micro-batches), on the clipped surrogate
   (token level with asymmetric clipping and a ``--loss-type`` aggregation, or sequence level as TRL's
   RLOO) plus β · k3 per token when ``--kl-in loss``.

No value model and no value adapter: the baseline is the other answers to the same prompt. The pure maths
are `alignkit.losses.group` and `alignkit.losses.policy_gradient`; the loop, resume, data parallelism and
reports are `trainers.online.loop`'s.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.losses.kl import FixedKLController, kl_penalty
from alignkit.losses.masked import masked_mean
from alignkit.losses.policy_gradient import (
    aggregate_token_loss,
    clip_fractions,
    clipped_sequence_loss,
    clipped_token_loss,
    kl_loss_term,
)
from alignkit.trainers import loop
from alignkit.trainers.online.advantages import GroupEstimator
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.experience import Experience
from alignkit.trainers.online.grpo_config import GRPOConfig, RLOOConfig
from alignkit.trainers.online.loop import OnlineAlgorithm, OnlineLoop, run_online
from alignkit.trainers.online.models import PPOModels, save_policy
from alignkit.trainers.online.packed import can_pack, packed_token_logps
from alignkit.trainers.online.rollout import rollout_seed

# ------------------------------------------------------------------------------------------- the update


def group_update(
    models: PPOModels,
    exp: Experience,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    cfg: GRPOConfig,
    step: int,
    dist: Dist,
    checkpoint: Path | None,
) -> dict[str, float]:
    """``num_iterations`` passes over one rollout, ``num_mini_batches`` optimizer steps each; mean statistics."""
    kind = "rloo" if isinstance(cfg, RLOOConfig) else "grpo"
    stats: dict[str, list[float]] = defaultdict(list)
    B = exp.response_ids.shape[0]
    plist = list(params.values())
    loss_mask = exp.response_mask & exp.finished[:, None] if cfg.mask_truncated else exp.response_mask
    on_policy = cfg.num_iterations == 1 and cfg.num_mini_batches == 1
    kl_rows: list[torch.Tensor] = []  # on-policy: each answer's KL from the update's own (exact) forward
    for iteration in range(cfg.num_iterations):
        if on_policy:
            order = torch.arange(B)
        else:
            seed = rollout_seed(cfg.seed, step, dist.rank) + iteration + 1
            order = torch.randperm(B, generator=torch.Generator().manual_seed(seed))
        for minibatch in torch.tensor_split(order, cfg.num_mini_batches):
            if minibatch.numel() == 0:
                continue
            tokens = dist.mean(float(loss_mask[minibatch.to(loss_mask.device)].sum()))  # dapo's num_items
            for idx in torch.tensor_split(minibatch, cfg.grad_accum):
                if idx.numel() == 0:
                    continue
                weight = 1.0 if cfg.loss_type == "dapo" else idx.numel() / minibatch.numel()
                with models.training():
                    micro, seq_kl = _micro_batch_backward(
                        models, exp, idx, loss_mask, cfg, weight, tokens, on_policy, step, checkpoint
                    )
                if on_policy:
                    kl_rows.append(seq_kl)
                for k, v in micro.items():
                    stats[f"{kind}/{k}"].append(v)
            dist.average_gradients(plist)
            if cfg.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(plist, cfg.max_grad_norm)
            else:
                grad_norm = torch.norm(torch.stack([p.grad.norm() for p in plist if p.grad is not None]))
            loop.check_finite(grad_norm, step, "the gradient norm", checkpoint)
            stats[f"{kind}/grad_norm"].append(float(grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    out = {k: sum(v) / len(v) for k, v in stats.items() if v}
    out[f"{kind}/updates"] = float(cfg.num_iterations * cfg.num_mini_batches)
    if kl_rows and not cfg.recompute_logprobs:
        # the rollout's KL came from the sampler's log-probs (another precision); this is the training pass's
        k1, k3 = torch.cat(kl_rows).mean(0).tolist()
        out.update({"kl/ref": k1, "kl/ref_k3": k3})
    return out


def _micro_batch_backward(
    models: PPOModels,
    exp: Experience,
    idx: torch.Tensor,
    loss_mask: torch.Tensor,
    cfg: GRPOConfig,
    weight: float,
    tokens: float,
    on_policy: bool,
    step: int,
    checkpoint: Path | None,
) -> tuple[dict[str, float], torch.Tensor]:
    """Accumulate the gradient of ``weight · loss`` on rows ``idx``, ``forward_batch_size`` rows at a time.

    The loss of the micro-batch is a sum over its chunks, each scaled so that the total is exactly the
    micro-batch's loss (an answer mean weighs a chunk by its share of the rows; bnpo divides by the
    micro-batch's token count): the peak memory is one chunk's activations whatever the batch.
    Returns the statistics (chunk means, averaged) and each answer's KL to the reference (k1 and k3
    summed over its tokens, (b, 2)) under the policy before this update's step.
    """
    idx = idx.to(exp.sequence_ids.device)
    micro_tokens = float(loss_mask[idx].sum())
    stats: dict[str, list[float]] = defaultdict(list)
    kls = []
    for rows in idx.split(cfg.forward_batch_size):
        share = rows.numel() / idx.numel()
        chunk_stats, seq_kl = _chunk_backward(
            models,
            exp,
            rows,
            loss_mask,
            cfg,
            weight,
            share,
            tokens,
            micro_tokens,
            on_policy,
            step,
            checkpoint,
        )
        for k, v in chunk_stats.items():
            stats[k].append(v)
        kls.append(seq_kl)
    return {k: sum(v) / len(v) for k, v in stats.items()}, torch.cat(kls)


def _chunk_backward(
    models: PPOModels,
    exp: Experience,
    rows: torch.Tensor,
    loss_mask: torch.Tensor,
    cfg: GRPOConfig,
    weight: float,
    share: float,
    tokens: float,
    micro_tokens: float,
    on_policy: bool,
    step: int,
    checkpoint: Path | None,
) -> tuple[dict[str, float], torch.Tensor]:
    """One chunk's forward and backward: ``weight`` · its part of the micro-batch's loss (see the caller)."""
    ids, mask, response_ids = exp.sequence_ids[rows], exp.sequence_mask[rows], exp.response_ids[rows]
    m = loss_mask[rows]
    assert exp.sequence_advantages is not None  # the critic-free estimators give one advantage per answer
    advantages = exp.sequence_advantages[rows]
    with models.as_policy() as policy:
        if cfg.share_prompts and exp.group_size > 1 and can_pack(policy):
            groups = (rows // exp.group_size).tolist()
            logps, entropy = packed_token_logps(
                models, policy, ids, mask, response_ids, exp.response_mask[rows], groups, cfg.temperature,
                with_entropy=True,
            )  # fmt: skip
        else:
            logps, entropy = models.token_logps(
                policy, ids, mask, response_ids, cfg.temperature, with_entropy=True
            )
    # on-policy (one update per rollout) the ratio is 1 with the gradient of log π: TRL's logps.detach()
    old = logps.detach() if on_policy else exp.old_logps[rows]
    ref = exp.ref_logps[rows]
    beta = cfg.beta if cfg.kl_in == "loss" else 0.0
    if cfg.loss_type == "sequence":
        clipped = clipped_sequence_loss(logps, old, advantages, m, cfg.epsilon, cfg.epsilon_upper)
        loss = clipped.loss.mean()
        if beta > 0:  # β · the answer's summed k3, mean over answers
            loss = loss + (kl_loss_term(logps, ref, beta) * m).sum(1).mean()
        answered = m.any(1)
        fractions = {
            "clip_ratio/low_mean": clipped.low_clipped[answered].float().mean(),
            "clip_ratio/high_mean": clipped.high_clipped[answered].float().mean(),
            "clip_ratio/region_mean": (clipped.low_clipped | clipped.high_clipped)[answered].float().mean(),
        }
        scaled = share * loss
    else:
        clipped = clipped_token_loss(logps, old, advantages, cfg.epsilon, cfg.epsilon_upper)
        per_token = clipped.loss + kl_loss_term(logps, ref, beta)
        if cfg.loss_type in ("bnpo", "dapo"):  # token sums over a fixed count: chunks add up exactly
            count = micro_tokens if cfg.loss_type == "bnpo" else tokens
            loss = aggregate_token_loss(per_token, m, "dapo", num_items=count)
            scaled = loss
        else:
            loss = aggregate_token_loss(per_token, m, cfg.loss_type, cfg.max_new_tokens)
            scaled = share * loss
        fractions = clip_fractions(clipped, m)
    loop.check_finite(loss.detach(), step, "the policy loss", checkpoint)
    (weight * scaled).backward()
    with torch.no_grad():
        k3 = kl_penalty(logps.detach(), ref, "k3")
        real = exp.response_mask[rows]
        zero = torch.zeros((), device=k3.device)
        seq_kl = torch.stack(
            [torch.where(real, logps.detach() - ref, zero).sum(1), torch.where(real, k3, zero).sum(1)], 1
        )
        stats = {
            "loss": float(loss.detach()),
            "kl_k3": float(masked_mean(k3, m)),
            "entropy": float(masked_mean(entropy, m)) if entropy is not None else float("nan"),
            "clip_low": float(fractions["clip_ratio/low_mean"]),
            "clip_high": float(fractions["clip_ratio/high_mean"]),
            "clip_region": float(fractions["clip_ratio/region_mean"]),
        }
        if not on_policy:  # how far this update has moved from the rollout policy
            stats["approx_kl"] = float(masked_mean(0.5 * (logps.detach() - exp.old_logps[rows]) ** 2, m))
    return {k: v for k, v in stats.items() if v == v}, seq_kl  # a chunk of empty answers has no means


# ------------------------------------------------------------------------------------------- warnings


def group_warnings(state: OnlineLoop, exp: Experience, metrics: dict[str, float]) -> list[str]:
    """Loud warnings for runs that learn nothing: equal rewards, truncation, a function that never rewards."""
    cfg = state.cfg
    assert isinstance(cfg, GRPOConfig)
    step, out = state.step, []
    streak = state.streaks.get("all_equal", 0)
    streak = streak + 1 if metrics.get("reward/frac_all_equal", 0.0) >= 1.0 else 0
    state.streaks["all_equal"] = streak
    if streak == cfg.all_equal_warn_steps:
        out.append(
            f"step {step}: every group's rewards have been equal for {streak} steps, so every advantage is 0 "
            "and nothing is learned; the reward cannot tell these answers apart. Check the reward function "
            "on a few answers, raise --temperature or --group-size, or use a reward with finer steps"
        )
    truncated = metrics.get("gen/truncated_frac", 0.0)
    if truncated > 0.5 and not _seen(state, "cut at --max-new-tokens"):
        out.append(
            f"step {step}: {truncated:.0%} of the answers were cut at --max-new-tokens ({cfg.max_new_tokens}) "
            "before they ended; the reward then judges unfinished answers. Raise --max-new-tokens, or use "
            "--mask-truncated to leave them out of the loss"
        )
    for member in state.reward_set.members:
        if not getattr(member.scorer, "abstains", False):
            continue
        if metrics.get(f"reward/{member.name}_none_frac", 0.0) >= 1.0 and not _seen(
            state, f"{member.name!r} returned None"
        ):
            out.append(
                f"step {step}: reward function {member.name!r} returned None for every answer, so no answer "
                "got a reward; check the columns it reads (a prompt file's other fields are passed by name)"
            )
    return out


def _seen(state: OnlineLoop, text: str) -> bool:
    return any(text in w for w in state.warnings_seen)


# ------------------------------------------------------------------------------------------- the run


def run_grpo(cfg: GRPOConfig) -> dict[str, Any]:
    """Train a policy with GRPO (or RLOO, by ``cfg``'s class) as ``cfg`` says; return the summary."""
    return run_online(cfg, group_algorithm(cfg))


def group_algorithm(cfg: GRPOConfig) -> OnlineAlgorithm:
    """GRPO or RLOO on the online loop: a group estimator, the clipped update, no value model."""
    kind = "rloo" if isinstance(cfg, RLOOConfig) else "grpo"
    estimator = GroupEstimator(cfg.advantage, cfg.group_size, cfg.scale_rewards, cfg.normalize_advantages)
    in_reward = cfg.kl_in == "reward"
    return OnlineAlgorithm(
        kind=kind,
        estimator=estimator,
        update=group_update,  # type: ignore[arg-type]
        save_outputs=lambda run, models, c: save_policy(run, models, c, kind),
        kl_controller=lambda c: FixedKLController(c.beta if in_reward else 0.0),
        kl_advice="Raise --beta (the KL coefficient to the reference) or lower --lr",
        warn=group_warnings,
    )


__all__ = ["group_algorithm", "group_update", "group_warnings", "run_grpo"]
