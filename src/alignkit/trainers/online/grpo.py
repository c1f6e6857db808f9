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
from alignkit.runs import Run
from alignkit.trainers import loop
from alignkit.trainers.online.advantages import GroupEstimator
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.experience import Experience
from alignkit.trainers.online.grpo_config import GRPOConfig, RLOOConfig
from alignkit.trainers.online.loop import OnlineAlgorithm, OnlineLoop, run_online
from alignkit.trainers.online.models import PPOModels
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
                    micro = _micro_batch_backward(
                        models, exp, idx, loss_mask, cfg, weight, tokens, on_policy, step, checkpoint
                    )
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
) -> dict[str, float]:
    """Accumulate the gradient of ``weight · loss`` on rows ``idx``; return the micro-batch's statistics."""
    idx = idx.to(exp.sequence_ids.device)
    ids, mask, response_ids = exp.sequence_ids[idx], exp.sequence_mask[idx], exp.response_ids[idx]
    m = loss_mask[idx]
    assert exp.sequence_advantages is not None  # the critic-free estimators give one advantage per answer
    advantages = exp.sequence_advantages[idx]
    with models.as_policy() as policy:
        logps, entropy = models.token_logps(
            policy, ids, mask, response_ids, cfg.temperature, with_entropy=True
        )
    # on-policy (one update per rollout) the ratio is 1 with the gradient of log π: TRL's logps.detach()
    old = logps.detach() if on_policy else exp.old_logps[idx]
    ref = exp.ref_logps[idx]
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
    else:
        clipped = clipped_token_loss(logps, old, advantages, cfg.epsilon, cfg.epsilon_upper)
        per_token = clipped.loss + kl_loss_term(logps, ref, beta)
        loss = aggregate_token_loss(per_token, m, cfg.loss_type, cfg.max_new_tokens, tokens)
        fractions = clip_fractions(clipped, m)
    loop.check_finite(loss.detach(), step, "the policy loss", checkpoint)
    (weight * loss).backward()
    with torch.no_grad():
        kl = masked_mean(kl_penalty(logps.detach(), ref, "k3"), m)
        approx_kl = masked_mean(0.5 * (logps.detach() - exp.old_logps[idx]) ** 2, m)
    assert entropy is not None
    stats = {
        "loss": float(loss.detach()),
        "kl_k3": float(kl),
        "approx_kl": float(approx_kl),
        "entropy": float(masked_mean(entropy, m)),
        "clip_low": float(fractions["clip_ratio/low_mean"]),
        "clip_high": float(fractions["clip_ratio/high_mean"]),
        "clip_region": float(fractions["clip_ratio/region_mean"]),
    }
    return {k: v for k, v in stats.items() if v == v}  # a micro-batch of empty answers has no means


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


def save_policy(run: Run, models: PPOModels, cfg: Any, trainer: str) -> None:
    """The trained policy in the run dir, loadable as a model by every command (sample, eval, plot, export)."""
    from alignkit.models import lora, registry

    if models.lora:
        lora.save_adapter(models.policy, "policy", run.path)
        registry.write_model_meta(
            run.path, base=models.base_name, adapter="policy", kind="policy", trainer=trainer
        )
        if cfg.merge:
            merged = lora.merge_adapter(models.policy, "policy")
            merged.save_pretrained(str(run.path / "merged"), safe_serialization=True)
            models.tokenizer.save_pretrained(str(run.path / "merged"))
    else:
        models.policy.save_pretrained(str(run.path / "policy"), safe_serialization=True)
        models.tokenizer.save_pretrained(str(run.path / "policy"))
    models.tokenizer.save_pretrained(str(run.path))


__all__ = ["group_algorithm", "group_update", "group_warnings", "run_grpo", "save_policy"]
