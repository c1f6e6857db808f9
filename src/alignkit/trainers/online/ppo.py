"""`alignkit ppo`: PPO as one algorithm of the online RL loop (`trainers.online.loop`).

One PPO step (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022; the
details of Huang et al. 2024, arXiv:2403.17031):

1. rollout (`experience.make_experience`): sample, score, KL-shaped rewards; advantages from
   PPO's estimator, GAE over the value model (`advantages.GAEEstimator`);
2. update (:func:`ppo_update`): ``ppo_epochs`` passes over the rollout, each shuffled
   and cut into ``num_mini_batches`` minibatches (each in ``grad_accum`` micro-batches);
   per minibatch one optimizer step on ``L = L_clip + vf_coef · L_V`` with the global
   gradient norm clipped; the passes stop early once the approx-KL between the
   updated policy and the rollout policy exceeds ``target_approx_kl``;
3. the KL controller sees the rollout's KL to the reference; the watch logs drift (the loop).

What is PPO's own here: the value model's start (``--value-init``), the update, the saved value
model. Roles and memory: `trainers.online.models`. Data parallelism: `trainers.online.distributed`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit import console
from alignkit.losses.kl import AdaptiveKLController, FixedKLController
from alignkit.losses.masked import masked_mean
from alignkit.losses.ppo import clipped_policy_loss, clipped_value_loss
from alignkit.runs import Run
from alignkit.trainers import loop
from alignkit.trainers.online.advantages import gae_estimator
from alignkit.trainers.online.config import PPOConfig
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.experience import Experience
from alignkit.trainers.online.loop import OnlineAlgorithm, run_online
from alignkit.trainers.online.models import PPOModels, init_value_from_reward, save_policy
from alignkit.trainers.online.rollout import rollout_seed

# ------------------------------------------------------------------------------------------- the update


def ppo_update(
    models: PPOModels,
    exp: Experience,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    cfg: PPOConfig,
    step: int,
    dist: Dist,
    checkpoint: Path | None,
) -> dict[str, float]:
    """PPO epochs over one rollout; returns the mean of each loss statistic over the micro-batches seen."""
    stats: dict[str, list[float]] = defaultdict(list)
    B, R = exp.response_ids.shape
    plist = list(params.values())
    early = False
    updates = 0
    for epoch in range(cfg.ppo_epochs):
        order = torch.randperm(
            B, generator=torch.Generator().manual_seed(rollout_seed(cfg.seed, step, dist.rank) + epoch + 1)
        )
        for minibatch in torch.tensor_split(order, cfg.num_mini_batches):
            if minibatch.numel() == 0:
                continue
            mb_kl = []
            for idx in torch.tensor_split(minibatch, cfg.grad_accum):
                if idx.numel() == 0:
                    continue
                with models.training():
                    micro = _micro_batch_backward(
                        models, exp, idx, cfg, idx.numel() / minibatch.numel(), step, checkpoint
                    )
                for k, v in micro.items():
                    stats[k].append(v)
                mb_kl.append(micro["ppo/approx_kl"])
            dist.average_gradients(plist)
            if cfg.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(plist, cfg.max_grad_norm)
            else:
                grad_norm = torch.norm(torch.stack([p.grad.norm() for p in plist if p.grad is not None]))
            loop.check_finite(grad_norm, step, "the gradient norm", checkpoint)
            stats["ppo/grad_norm"].append(float(grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            updates += 1
            # CleanRL's early stop, checked after every minibatch and agreed on by all processes
            approx_kl = dist.mean(sum(mb_kl) / max(len(mb_kl), 1))
            if cfg.target_approx_kl > 0 and approx_kl > cfg.target_approx_kl:
                early = True
                break
        if early:
            break
    out = {k: sum(v) / len(v) for k, v in stats.items() if v}
    out["ppo/early_stopped"] = float(early)
    out["ppo/updates"] = float(updates)
    return out


def _micro_batch_backward(
    models: PPOModels,
    exp: Experience,
    idx: torch.Tensor,
    cfg: PPOConfig,
    scale: float,
    step: int,
    checkpoint: Path | None,
) -> dict[str, float]:
    """Accumulate the gradient of ``scale · (L_clip + vf_coef · L_V)`` on rows ``idx``; return the statistics.

    The policy and value terms depend on disjoint parameters (two adapters, or two models), so each
    is backpropagated right after its own forward pass: the activations of only one forward pass are
    alive at a time, which halves the update's peak memory for the same gradient.
    """
    idx = idx.to(exp.sequence_ids.device)  # the rollout is on the models' device; the shuffle on the CPU
    ids, mask = exp.sequence_ids[idx], exp.sequence_mask[idx]
    response_ids, response_mask = exp.response_ids[idx], exp.response_mask[idx]
    with models.as_policy() as policy:
        logps, entropy = models.token_logps(
            policy, ids, mask, response_ids, cfg.temperature, with_entropy=True
        )
    pg_loss, pg_stats = clipped_policy_loss(
        logps, exp.old_logps[idx], exp.advantages[idx], response_mask, cfg.clip_range
    )
    loop.check_finite(pg_loss.detach(), step, "the policy loss", checkpoint)
    (scale * pg_loss).backward()
    del logps
    with models.as_value() as value_model:
        values = models.values(value_model, ids, mask, response_ids.shape[1])
    assert exp.values is not None  # PPO's estimator needs the value model: the rollout computed V(s_t)
    if cfg.value_clip_range > 0:
        vf_loss, vf_stats = clipped_value_loss(
            values, exp.values[idx], exp.returns[idx], response_mask, cfg.value_clip_range
        )
    else:
        vf_loss = 0.5 * masked_mean((values - exp.returns[idx]) ** 2, response_mask)
        vf_stats = {"ppo/value_clipfrac": torch.zeros(()), "ppo/value_error": 2 * vf_loss.detach()}
    loop.check_finite(vf_loss.detach(), step, "the value loss (value head diverged)", checkpoint)
    (scale * cfg.vf_coef * vf_loss).backward()
    stats = {k: float(v) for k, v in {**pg_stats, **vf_stats}.items()}
    stats["ppo/policy_loss"] = float(pg_loss.detach())
    stats["ppo/value_loss"] = float(vf_loss.detach())
    stats["ppo/loss"] = stats["ppo/policy_loss"] + cfg.vf_coef * stats["ppo/value_loss"]
    assert entropy is not None
    stats["ppo/entropy"] = float(masked_mean(entropy, response_mask))
    return stats


# ------------------------------------------------------------------------------------------- the run


def run_ppo(cfg: PPOConfig) -> dict[str, Any]:
    """Train a policy with PPO as ``cfg`` says; return the summary (also printed with --json)."""
    return run_online(cfg, ppo_algorithm(cfg))


def ppo_algorithm(cfg: PPOConfig) -> OnlineAlgorithm:
    """PPO on the online loop: GAE over the value model, the clipped policy + value update."""
    return OnlineAlgorithm(
        kind="ppo",
        estimator=gae_estimator(cfg),
        update=ppo_update,
        save_outputs=_save_outputs,
        kl_controller=_kl_controller,
        kl_advice=(
            "The adaptive controller raises the KL coefficient; if it keeps growing, lower --lr or use a "
            "smaller --kl-horizon"
            if cfg.adaptive_kl
            else "Raise --kl-coef or use --adaptive-kl"
        ),
        prepare=_init_value,
    )


def _kl_controller(cfg: PPOConfig) -> FixedKLController | AdaptiveKLController:
    """β of the per-token KL penalty in the reward: fixed --kl-coef, or adaptive (Ziegler et al. 2019)."""
    if cfg.adaptive_kl:
        return AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


def _init_value(models: PPOModels, cfg: PPOConfig) -> None:
    """--value-init reward: the value adapter and head start as the first reward model's (when they can)."""
    if cfg.value_init != "reward":
        return
    if not cfg.reward_model:
        console.info("value model starts from zero (no reward model to start it from: rewards are functions)")
    elif not init_value_from_reward(models, Path(reward_set_path(cfg, 0))):
        console.info(
            "value model starts from zero (the first reward model is not a same-base LoRA `alignkit rm` run)"
        )


def reward_set_path(cfg: PPOConfig, index: int) -> str:
    """The directory of the ``index``-th --reward-model (its ``name=`` prefix removed)."""
    from alignkit.rewards.ensemble import parse_reward_spec

    return parse_reward_spec(cfg.reward_model[index])[1]


def _save_outputs(run: Run, models: PPOModels, cfg: PPOConfig) -> None:
    """The trained policy in the run dir (loadable as a model by every command), the value model beside it."""
    from alignkit.models import heads, lora

    if models.lora:  # before save_policy, whose --merge may fold the policy adapter into the weights
        lora.save_adapter(models.policy, "value", run.path / "value")
    heads.save_head(models.value_head, run.path / "value", "value")
    save_policy(run, models, cfg, "ppo")


__all__ = ["ppo_algorithm", "ppo_update", "run_ppo"]
