"""`alignkit ppo`: the PPO update and the training loop.

One PPO step (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022; the
details of Huang et al. 2024, arXiv:2403.17031):

1. rollout (`ppo_rollout.make_experience`): sample, score, advantages;
2. update (:func:`ppo_update`): ``ppo_epochs`` passes over the rollout, each shuffled
   and cut into ``num_mini_batches`` minibatches (each in ``grad_accum`` micro-batches);
   per minibatch one optimizer step on ``L = L_clip + vf_coef · L_V`` with the global
   gradient norm clipped; the passes stop early once the approx-KL between the
   updated policy and the rollout policy exceeds ``target_approx_kl``;
3. the KL controller sees the rollout's KL to the reference; the watch logs drift.

Roles and memory: `ppo_models`. Data parallelism: `ppo_dist`.
"""

from __future__ import annotations

import math
import random
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignkit import console
from alignkit.errors import UserError
from alignkit.losses.ppo import (
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    clipped_policy_loss,
    clipped_value_loss,
    masked_mean,
)
from alignkit.rewards.ensemble import load_reward_set, template_suffix_ids
from alignkit.runs import Run, read_metrics
from alignkit.trainers import loop
from alignkit.trainers.online.config import PPOConfig
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.models import PPOModels, build_models, init_value_from_reward, print_roles
from alignkit.trainers.online.rollout import Experience, evaluate_policy, make_experience, rollout_seed
from alignkit.watch import Watch

# Metrics averaged over processes at the end of a step (the rest are this process's or already global).
_LOCAL_PREFIXES = ("ppo/", "reward/", "gen/", "value/", "kl/ref", "kl/penalty", "gold/")


def _gold_scorer(cfg: PPOConfig):
    """The held-out gold scorer of --gold-reward-model / --gold-judge simulated, or None."""
    from alignkit.evaluation.policy import reward_scorer, simulated_scorer

    if cfg.gold_reward_model:
        return reward_scorer(
            cfg.gold_reward_model, [], "sum", None, cfg.dtype, cfg.forward_batch_size, "gold"
        )
    if cfg.gold_judge is not None:
        return simulated_scorer("gold: simulated")
    return None


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


# ------------------------------------------------------------------------------------------------ data


def _load_prompts(cfg: PPOConfig) -> tuple[list[Any], list[Any]]:
    """(train prompts, eval prompts) as Conversations."""
    from alignkit.data.load import load_records, split_records

    if not cfg.prompts:
        raise UserError(
            "no prompts: pass --prompts FILE (one prompt per record; any format `data inspect` reads)"
        )
    train = load_records(cfg.prompts, kind="prompt", skip_invalid=cfg.skip_invalid).records
    evals: list[Any] = []
    if cfg.eval_data:
        evals = load_records(cfg.eval_data, kind="prompt", skip_invalid=cfg.skip_invalid).records
    elif cfg.eval_split > 0:
        train, evals = split_records(train, cfg.eval_split, cfg.seed)
    return [r.prompt for r in train], [r.prompt for r in evals]


def _epoch_batches(n: int, batch_size: int, seed: int) -> Any:
    """make_epoch(epoch) -> full batches of prompt indices in a (seed, epoch) shuffle (the last partial one dropped)."""

    def make(epoch: int) -> list[list[int]]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
        if n < batch_size:
            return [order]
        return [order[i : i + batch_size] for i in range(0, n - n % batch_size, batch_size)]

    return make


# ------------------------------------------------------------------------------------------- the loop


def _rng_state() -> dict[str, Any]:
    state = np.random.get_state()
    return {"numpy": [state[0], state[1].tolist(), int(state[2]), int(state[3]), float(state[4])]}


def _set_numpy_rng(state: dict[str, Any]) -> None:
    s = state["numpy"]
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4]))


def _summary(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None and "eval" not in r]
    if not points:
        return {}
    values = [v for _, v in points]
    return {
        "first": values[0],
        "last": values[-1],
        "min": min(values),
        "max": max(values),
        "mean": sum(values) / len(values),
        "curve": points,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run_ppo(cfg: PPOConfig) -> dict[str, Any]:
    """Train a policy with PPO as ``cfg`` says; return the summary (also printed with --json)."""
    if not cfg.reward_model:
        raise UserError(
            "no reward model: pass --reward-model DIR (an `alignkit rm` run or a classifier checkpoint)"
        )
    dist = Dist()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    run = Run.create("ppo", cfg.output, cfg, resume=cfg.resume) if dist.is_main else None
    dist.barrier()
    if run is None:  # other processes open the directory rank 0 created
        run = Run(Path(cfg.output)) if cfg.output else None
    train_prompts, eval_prompts = _load_prompts(cfg)

    models = build_models(cfg)
    reward_set = load_reward_set(
        cfg.reward_model,
        cfg.reward_weight or None,
        cfg.reward_combine,
        cfg.reward_gate,
        cfg.reward_gate_penalty,
        cfg.dtype,
        shared_model=models.policy if models.lora else None,
        shared_base=models.base_name,
        forward_batch_size=cfg.forward_batch_size,
        device=models.device,
    )
    if cfg.value_init == "reward" and not init_value_from_reward(models, Path(reward_set_path(cfg, 0))):
        console.info(
            "value model starts from zero (the first reward model is not a same-base LoRA `alignkit rm` run)"
        )
    if dist.is_main:
        print_roles(models, reward_set.members)
    suffix = template_suffix_ids(models.tokenizer)
    gold = _gold_scorer(cfg)

    params = models.trainable()
    optimizer = loop.build_optimizer(params, cfg.lr, cfg.weight_decay)
    per_step = cfg.batch_size * dist.world
    total_steps = loop.plan_steps(math.ceil(len(train_prompts) / per_step), 1, cfg.epochs, cfg.max_steps)
    scheduler = loop.build_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    kl_ctl: FixedKLController | AdaptiveKLController = (
        AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        if cfg.adaptive_kl
        else FixedKLController(cfg.kl_coef)
    )
    moments = RunningMoments()
    advice = (
        "The adaptive controller raises the KL coefficient; if it keeps growing, lower --lr or use a smaller --kl-horizon"
        if cfg.adaptive_kl
        else "Raise --kl-coef or use --adaptive-kl"
    )
    watch = Watch(kl_target=cfg.kl_target, length_drift=cfg.length_drift_warn, kl_advice=advice)
    cursor = loop.BatchCursor()
    step = 0
    warnings_seen: list[str] = []
    eval_rows: list[dict[str, Any]] = []
    checkpoint: Path | None = None

    if cfg.resume and run is not None and run.latest_checkpoint() is not None:
        checkpoint = run.latest_checkpoint()
        assert checkpoint is not None
        state = loop.load_checkpoint(checkpoint, params, optimizer, scheduler)
        step = int(state["step"])
        cursor = loop.BatchCursor(**state["cursor"])
        kl_ctl.load_state_dict(state["kl_controller"])
        moments.load_state_dict(state["moments"])
        watch.load_state_dict(state["watch"])
        _set_numpy_rng(state["rng"])
        warnings_seen = list(state.get("warnings", []))
        eval_rows = list(state.get("eval_rows", []))
        if dist.is_main:
            run.truncate_metrics(step)
            console.info(f"resumed from {checkpoint} at step {step}")
    elif cfg.resume and dist.is_main:
        console.info("--resume: no checkpoint yet, starting from step 0")

    batches = loop.micro_batches(
        _epoch_batches(len(train_prompts), cfg.batch_size, cfg.seed), cursor, (dist.rank, dist.world)
    )

    def save(at: int) -> Path | None:
        if run is None or not dist.is_main:
            return None
        state = {
            "cursor": {"epoch": cursor.epoch, "batch": cursor.batch},
            "kl_controller": kl_ctl.state_dict(),
            "moments": moments.state_dict(),
            "watch": watch.state_dict(),
            "rng": _rng_state(),
            "warnings": warnings_seen,
            "eval_rows": eval_rows,
        }
        return loop.save_checkpoint(run, at, params, optimizer, scheduler, state, keep=cfg.keep_checkpoints)

    def run_eval(at: int) -> None:
        if not eval_prompts or not dist.is_main:
            return
        row = evaluate_policy(models, reward_set, eval_prompts, cfg, suffix)
        row = {f"eval/{k}": v for k, v in row.items()}
        eval_rows.append({"step": at, **row})
        if run is not None:
            run.log(at, {**row, "eval": 1})

    if step == 0:
        run_eval(0)
    start = time.perf_counter()
    with console.progress("ppo", total_steps, unit="step") as tracker:
        tracker.advance(step)
        while step < total_steps:
            step += 1
            indices = next(batches)
            prompts = [train_prompts[i] for i in indices]
            t0 = time.perf_counter()
            exp = make_experience(
                models, reward_set, prompts, cfg, step, kl_ctl.value, moments, dist, suffix, gold=gold
            )
            t1 = time.perf_counter()
            update_stats = ppo_update(models, exp, params, optimizer, cfg, step, dist, checkpoint)
            scheduler.step()
            t2 = time.perf_counter()
            metrics = {**exp.metrics, **update_stats}
            watch_metrics, warnings = watch.update(
                step, dist.mean(exp.metrics["kl/ref"]), exp.response_tokens, exp.finished.tolist()
            )
            metrics.update(watch_metrics)
            metrics = {k: (dist.mean(v) if k.startswith(_LOCAL_PREFIXES) else v) for k, v in metrics.items()}
            kl_ctl.update(metrics["kl/ref"], cfg.batch_size * dist.world)
            metrics.update(
                {
                    "kl/coef_next": kl_ctl.value,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/processes": float(dist.world),
                    "train/epoch": cursor.epoch + cursor.batch / max(1, len(train_prompts) // cfg.batch_size),
                    "perf/rollout_seconds": t1 - t0,
                    "perf/update_seconds": t2 - t1,
                    "perf/step_seconds": t2 - t0,
                    "perf/peak_rss_mb": _peak_rss_mb(),
                }
            )
            if exp.metrics["gen/prompts_truncated"] > 0 and not any(
                "longer than" in w for w in warnings_seen
            ):
                warnings.append(
                    f"step {step}: {int(exp.metrics['gen/prompts_truncated'])} prompt(s) longer than --max-length - "
                    f"--max-new-tokens ({cfg.max_length - cfg.max_new_tokens} tokens) lost their first tokens; "
                    "report.json counts them all"
                )
            if dist.is_main:
                for w in warnings:
                    console.warn(w)
                    warnings_seen.append(w)
                if run is not None and (step % cfg.log_every == 0 or step == total_steps):
                    run.log(step, metrics)
            tracker.advance(1, tokens=int(exp.metrics["gen/response_tokens"]))
            tracker.set(status=f"score {metrics['reward/score']:.3f} kl {metrics['kl/ref']:.3f}")
            if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < total_steps:
                run_eval(step)
            if step == total_steps or (cfg.save_every > 0 and step % cfg.save_every == 0):
                dist.check_same(params.values(), "trainable weights")
                checkpoint = save(step) or checkpoint
            dist.barrier()
    train_seconds = time.perf_counter() - start
    if eval_prompts and (not eval_rows or eval_rows[-1]["step"] != step):
        run_eval(step)
    summary: dict[str, Any] = {
        "run": str(run.path) if run else None,
        "steps": step,
        "train_seconds": train_seconds,
    }
    if run is not None and dist.is_main:
        _save_outputs(run, models, cfg)
        rows = [r for r in read_metrics(run.metrics_path) if "eval" not in r]
        last = rows[-1] if rows else {}
        summary.update(
            {
                "final_reward": last.get("reward/score"),
                "final_kl": last.get("kl/ref"),
                "final_kl_coef": last.get("kl/coef_next"),
                "final_length": last.get("gen/length"),
                "mean_step_seconds": (sum(r["perf/step_seconds"] for r in rows) / len(rows))
                if rows
                else None,
                "peak_rss_mb": _peak_rss_mb(),
                "eval": eval_rows,
                "warnings": len(warnings_seen),
            }
        )
        report = {
            **summary,
            "reward": _summary(rows, "reward/score"),
            "kl": _summary(rows, "kl/ref"),
            "length": _summary(rows, "gen/length"),
            "per_model": {m.name: _summary(rows, f"reward/{m.name}") for m in reward_set.members},
            "warnings": warnings_seen,
            "prompts_truncated": sum(int(r.get("gen/prompts_truncated", 0)) for r in rows),
            "retokenised_rows": dict(reward_set.retokenised),
            "reward_models": [
                {"name": m.name, "weight": m.weight, "shared_base": bool(getattr(m.scorer, "shared", False))}
                for m in reward_set.members
            ],
            "memory_bytes": models.parameter_bytes(),
        }
        run.write_report(report)
    return summary


def reward_set_path(cfg: PPOConfig, index: int) -> str:
    from alignkit.rewards.ensemble import parse_reward_spec

    return parse_reward_spec(cfg.reward_model[index])[1]


def _save_outputs(run: Run, models: PPOModels, cfg: PPOConfig) -> None:
    """The trained policy in the run dir (loadable as a model by every command), the value model beside it."""
    from alignkit.models import heads, lora, registry

    if models.lora:
        lora.save_adapter(models.policy, "policy", run.path)
        registry.write_model_meta(
            run.path, base=models.base_name, adapter="policy", kind="policy", trainer="ppo"
        )
        lora.save_adapter(models.policy, "value", run.path / "value")
        heads.save_head(models.value_head, run.path / "value", "value")
        if cfg.merge:
            merged = lora.merge_adapter(models.policy, "policy")
            merged.save_pretrained(str(run.path / "merged"), safe_serialization=True)
            models.tokenizer.save_pretrained(str(run.path / "merged"))
    else:
        models.policy.save_pretrained(str(run.path / "policy"), safe_serialization=True)
        models.tokenizer.save_pretrained(str(run.path / "policy"))
        heads.save_head(models.value_head, run.path / "value", "value")
    models.tokenizer.save_pretrained(str(run.path))


__all__ = ["ppo_update", "run_ppo"]
