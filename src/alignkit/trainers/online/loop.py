"""The online RL loop that every online algorithm runs: set up, resume, iterate, report.

One run (:func:`run_online`) of an `OnlineAlgorithm` (PPO today, `trainers.online.ppo`):

1. set-up (:func:`setup`): the run directory, the prompts, the models and reward models, the
   optimizer and schedule, the KL controller, the running score statistics and the watch;
2. resume (:func:`resume`): the last checkpoint's weights, optimizer, data position and controllers;
3. each step (:func:`iteration`): rollout and experience (`experience.make_experience`, with the
   algorithm's advantage estimator) -> the algorithm's update -> metrics averaged over processes,
   the KL controller, logging, evaluation, checkpoint;
4. the end (:func:`finish`): a last evaluation, the algorithm's outputs, report.json.

What the steps share lives in one `OnlineLoop`. Roles and memory: `trainers.online.models`.
Data parallelism: `trainers.online.distributed`.
"""

from __future__ import annotations

import math
import random
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignkit import console
from alignkit.data.records import Record
from alignkit.errors import UserError
from alignkit.losses.advantages import RunningMoments
from alignkit.losses.kl import AdaptiveKLController, FixedKLController
from alignkit.rewards.encoding import template_suffix_ids
from alignkit.rewards.ensemble import RewardSet, load_reward_set
from alignkit.rewards.verifiers import reward_function_members
from alignkit.runs import Run, read_metrics
from alignkit.trainers.checkpoints import load_checkpoint, save_checkpoint
from alignkit.trainers.compiled import compiled_training
from alignkit.trainers.loop import BatchCursor, build_optimizer, build_scheduler, micro_batches, plan_steps
from alignkit.trainers.memory import release_freed_memory
from alignkit.trainers.online.advantages import AdvantageEstimator
from alignkit.trainers.online.config import OnlineConfig
from alignkit.trainers.online.distributed import Dist
from alignkit.trainers.online.experience import Experience, make_experience
from alignkit.trainers.online.inputs import gold_scorer, judge_members, load_prompts
from alignkit.trainers.online.models import PPOModels, build_models, print_roles
from alignkit.trainers.online.rollout import evaluate_policy
from alignkit.watch import Watch

# Metrics averaged over processes at the end of a step, besides the algorithm's own "<kind>/" ones
# (the rest are this process's or already global).
_LOCAL_PREFIXES = ("reward/", "gen/", "value/", "kl/ref", "kl/penalty", "gold/")

UpdateFn = Callable[
    [
        PPOModels,
        Experience,
        dict[str, nn.Parameter],
        torch.optim.Optimizer,
        OnlineConfig,
        int,
        Dist,
        Path | None,
    ],
    dict[str, float],
]
"""The algorithm's optimisation on one rollout: (models, experience, params, optimizer, cfg, step, dist,
last checkpoint) -> its metrics."""


@dataclass(frozen=True)
class OnlineAlgorithm:
    """What one online RL algorithm plugs into the loop."""

    kind: str  # the run's kind ("ppo"): its run directory, its progress bar, its metrics' prefix
    estimator: AdvantageEstimator  # advantages (and returns) from a rollout's rewards
    update: UpdateFn  # the optimizer steps on one rollout
    save_outputs: Callable[[Run, PPOModels, OnlineConfig], None]  # the trained models into the run dir
    kl_controller: Callable[
        [OnlineConfig], FixedKLController | AdaptiveKLController
    ]  # the KL-in-reward coefficient
    kl_advice: str  # what to do when the KL to the reference runs away (the watch's warning)
    prepare: Callable[[PPOModels, OnlineConfig], None] | None = (
        None  # after the models load (PPO: value init)
    )
    warn: Callable[[OnlineLoop, Experience, dict[str, float]], list[str]] | None = None  # its own warnings


@dataclass
class OnlineLoop:
    """What the steps of one run share: its set-up, then the state a checkpoint carries."""

    cfg: OnlineConfig
    algorithm: OnlineAlgorithm
    dist: Dist
    run: Run | None
    train_prompts: list[Record]  # prompt records: the prompt, and the columns reward functions read
    eval_prompts: list[Record]
    models: PPOModels
    reward_set: RewardSet
    suffix: list[int]  # the chat template's tokens after EOS (`rewards.encoding.template_suffix_ids`)
    gold: Any  # the held-out gold scorer, or None
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    kl_ctl: FixedKLController | AdaptiveKLController
    moments: RunningMoments
    watch: Watch
    cursor: BatchCursor = field(default_factory=BatchCursor)
    step: int = 0
    warnings_seen: list[str] = field(default_factory=list)
    streaks: dict[str, int] = field(default_factory=dict)  # the algorithm's warning counters (checkpointed)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    batches: Iterator[list[int]] | None = None  # this process's prompt indices, from the cursor on


def run_online(cfg: OnlineConfig, algorithm: OnlineAlgorithm) -> dict[str, Any]:
    """Train a policy with ``algorithm`` as ``cfg`` says; return the summary (also printed with --json)."""
    state = setup(cfg, algorithm)
    resume(state)
    state.batches = micro_batches(
        _epoch_batches(len(state.train_prompts), cfg.batch_size, cfg.seed),
        state.cursor,
        (state.dist.rank, state.dist.world),
    )
    if state.step == 0:
        run_eval(state, 0)
    start = time.perf_counter()
    with (
        compiled_training(state.models.policy, cfg.compile, state.models.device, algorithm.kind),
        console.progress(algorithm.kind, state.total_steps, unit="step") as tracker,
    ):
        tracker.advance(state.step)
        while state.step < state.total_steps:
            iteration(state, tracker)
    return finish(state, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------- set-up


def setup(cfg: OnlineConfig, algorithm: OnlineAlgorithm) -> OnlineLoop:
    """Seed, open the run, load prompts and models, build the optimizer and the controllers."""
    if not cfg.reward_model and not cfg.reward_fn and not cfg.reward_judge:
        raise UserError(
            "no reward: pass --reward-model DIR (an `alignkit rm` run or a classifier checkpoint), "
            "--reward-fn FILE.py:NAME (a Python reward function, or a built-in: math, length, ifeval) "
            "or --reward-judge (simulated, a local model or an HTTP endpoint)"
        )
    dist = Dist()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    run = Run.create(algorithm.kind, cfg.output, cfg, resume=cfg.resume) if dist.is_main else None
    dist.barrier()
    if run is None:  # other processes open the directory rank 0 created
        run = Run(Path(cfg.output)) if cfg.output else None
    train_prompts, eval_prompts = load_prompts(cfg, dist.is_main)
    models, reward_set = _load_models(cfg, algorithm, dist)
    suffix = template_suffix_ids(models.tokenizer)
    gold = gold_scorer(cfg)

    params = models.trainable()
    optimizer = build_optimizer(params, cfg.lr, cfg.weight_decay)
    per_step = cfg.batch_size * dist.world
    total_steps = plan_steps(math.ceil(len(train_prompts) / per_step), 1, cfg.epochs, cfg.max_steps)
    scheduler = build_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    kl_ctl = algorithm.kl_controller(cfg)
    watch = Watch(kl_target=cfg.kl_target, length_drift=cfg.length_drift_warn, kl_advice=algorithm.kl_advice)
    return OnlineLoop(
        cfg=cfg, algorithm=algorithm, dist=dist, run=run, train_prompts=train_prompts,
        eval_prompts=eval_prompts, models=models, reward_set=reward_set, suffix=suffix, gold=gold,
        params=params, optimizer=optimizer, scheduler=scheduler, total_steps=total_steps, kl_ctl=kl_ctl,
        moments=RunningMoments(), watch=watch,
    )  # fmt: skip


def _load_models(cfg: OnlineConfig, algorithm: OnlineAlgorithm, dist: Dist) -> tuple[PPOModels, RewardSet]:
    """The policy/reference(/value) roles, then the reward models (sharing the base when they can) and functions."""
    functions = reward_function_members(cfg.reward_fn, cfg.reward_fn_weight or None)  # bad specs fail first
    functions += judge_members(cfg)
    models = build_models(cfg, with_value=algorithm.estimator.needs_value)
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
        functions=functions,
    )
    if algorithm.prepare is not None:
        algorithm.prepare(models, cfg)
    if dist.is_main:
        print_roles(models, reward_set.members)
    return models, reward_set


def _epoch_batches(n: int, batch_size: int, seed: int) -> Any:
    """make_epoch(epoch) -> full batches of prompt indices in a (seed, epoch) shuffle (the last partial one dropped)."""

    def make(epoch: int) -> list[list[int]]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
        if n < batch_size:
            return [order]
        return [order[i : i + batch_size] for i in range(0, n - n % batch_size, batch_size)]

    return make


# ----------------------------------------------------------------------------- checkpoints, resume


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global RNG state as JSON (the checkpoint itself carries torch's and Python's: `trainers.checkpoints`)."""
    state = np.random.get_state()
    return {"numpy": [state[0], state[1].tolist(), int(state[2]), int(state[3]), float(state[4])]}


def set_numpy_rng(state: dict[str, Any]) -> None:
    """Restore what `numpy_rng_state` returned."""
    s = state["numpy"]
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4]))


def resume(state: OnlineLoop) -> None:
    """--resume: continue from the run's last checkpoint (weights, optimizer, data position, controllers)."""
    cfg, run = state.cfg, state.run
    if cfg.resume and run is not None and run.latest_checkpoint() is not None:
        checkpoint = run.latest_checkpoint()
        assert checkpoint is not None
        state.checkpoint = checkpoint
        saved = load_checkpoint(checkpoint, state.params, state.optimizer, state.scheduler)
        state.step = int(saved["step"])
        state.cursor = BatchCursor(**saved["cursor"])
        state.kl_ctl.load_state_dict(saved["kl_controller"])
        state.moments.load_state_dict(saved["moments"])
        state.watch.load_state_dict(saved["watch"])
        set_numpy_rng(saved["rng"])
        state.warnings_seen = list(saved.get("warnings", []))
        state.streaks = dict(saved.get("streaks", {}))
        state.eval_rows = list(saved.get("eval_rows", []))
        if state.dist.is_main:
            run.rewind_metrics(state.step)
            console.info(f"resumed from {checkpoint} at step {state.step}")
    elif cfg.resume and run is not None and state.dist.is_main:
        run.rewind_metrics(None)  # killed before the first checkpoint: start over, without its rows


def save(state: OnlineLoop, at: int) -> Path | None:
    """Checkpoint step ``at`` (the main process only); return its directory, or None where nothing was written."""
    if state.run is None or not state.dist.is_main:
        return None
    trainer_state = {
        "cursor": {"epoch": state.cursor.epoch, "batch": state.cursor.batch},
        "kl_controller": state.kl_ctl.state_dict(),
        "moments": state.moments.state_dict(),
        "watch": state.watch.state_dict(),
        "rng": numpy_rng_state(),
        "warnings": state.warnings_seen,
        "streaks": state.streaks,
        "eval_rows": state.eval_rows,
    }
    return save_checkpoint(
        state.run, at, state.params, state.optimizer, state.scheduler, trainer_state,
        keep=state.cfg.keep_checkpoints,
    )  # fmt: skip


def run_eval(state: OnlineLoop, at: int) -> None:
    """Evaluate on the held-out prompts (the main process only) and log the row as ``eval/*``."""
    if not state.eval_prompts or not state.dist.is_main:
        return
    row = evaluate_policy(state.models, state.reward_set, state.eval_prompts, state.cfg, state.suffix)
    row = {f"eval/{k}": v for k, v in row.items()}
    state.eval_rows.append({"step": at, **row})
    if state.run is not None:
        state.run.log(at, {**row, "eval": 1})


# ------------------------------------------------------------------------------------------ one step


def iteration(state: OnlineLoop, tracker: Any) -> None:
    """One step: rollout -> experience -> the algorithm's update -> metrics, logging, eval, checkpoint."""
    cfg, dist = state.cfg, state.dist
    state.step += 1
    step = state.step
    assert state.batches is not None
    indices = next(state.batches)
    prompts = [state.train_prompts[i] for i in indices]
    t0 = time.perf_counter()
    exp = make_experience(
        state.models, state.reward_set, prompts, cfg, step, state.kl_ctl.value, state.moments, dist,
        state.suffix, gold=state.gold, estimator=state.algorithm.estimator,
    )  # fmt: skip
    release_freed_memory()  # the sampler's and the forwards' freed heap back to the OS before the update
    t1 = time.perf_counter()
    update_stats = state.algorithm.update(
        state.models, exp, state.params, state.optimizer, cfg, step, dist, state.checkpoint
    )
    state.scheduler.step()
    release_freed_memory()
    t2 = time.perf_counter()
    metrics, warnings = _step_metrics(state, exp, update_stats, (t0, t1, t2))
    if state.algorithm.warn is not None:
        warnings += state.algorithm.warn(state, exp, metrics)
    if dist.is_main:
        for w in warnings:
            console.warn(w)
            state.warnings_seen.append(w)
        if state.run is not None and (step % cfg.log_every == 0 or step == state.total_steps):
            state.run.log(step, metrics)
    tracker.advance(1, tokens=int(exp.metrics["gen/response_tokens"]))
    tracker.set(status=f"score {metrics['reward/score']:.3f} kl {metrics['kl/ref']:.3f}")
    if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < state.total_steps:
        run_eval(state, step)
    if step == state.total_steps or (cfg.save_every > 0 and step % cfg.save_every == 0):
        dist.check_same(state.params.values(), "trainable weights")
        state.checkpoint = save(state, step) or state.checkpoint
    dist.barrier()


def _step_metrics(
    state: OnlineLoop, exp: Experience, update_stats: dict[str, float], times: tuple[float, float, float]
) -> tuple[dict[str, float], list[str]]:
    """The step's metrics (averaged over processes where local) and its new warnings; updates the KL controller."""
    cfg, dist, step = state.cfg, state.dist, state.step
    t0, t1, t2 = times
    metrics = {**exp.metrics, **update_stats}
    watch_metrics, warnings = state.watch.update(
        step, dist.mean(metrics["kl/ref"]), exp.response_tokens, exp.finished.tolist()
    )
    metrics.update(watch_metrics)
    local = (f"{state.algorithm.kind}/", *_LOCAL_PREFIXES)
    metrics = {k: (dist.mean(v) if k.startswith(local) else v) for k, v in metrics.items()}
    state.kl_ctl.update(metrics["kl/ref"], cfg.batch_size * dist.world)
    cursor = state.cursor
    metrics.update(
        {
            "kl/coef_next": state.kl_ctl.value,
            "train/lr": state.scheduler.get_last_lr()[0],
            "train/processes": float(dist.world),
            "train/epoch": cursor.epoch + cursor.batch / max(1, len(state.train_prompts) // cfg.batch_size),
            "perf/rollout_seconds": t1 - t0,
            "perf/update_seconds": t2 - t1,
            "perf/step_seconds": t2 - t0,
            "perf/peak_rss_mb": _peak_rss_mb(),
        }
    )
    if exp.metrics["gen/prompts_truncated"] > 0 and not any("longer than" in w for w in state.warnings_seen):
        warnings.append(
            f"step {step}: {int(exp.metrics['gen/prompts_truncated'])} prompt(s) longer than --max-length - "
            f"--max-new-tokens ({cfg.max_length - cfg.max_new_tokens} tokens) lost their first tokens; "
            "report.json counts them all"
        )
    return metrics, warnings


# ------------------------------------------------------------------------------------------- the end


def finish(state: OnlineLoop, train_seconds: float) -> dict[str, Any]:
    """A last evaluation, the algorithm's outputs and report.json; return the summary."""
    run, step = state.run, state.step
    if state.eval_prompts and (not state.eval_rows or state.eval_rows[-1]["step"] != step):
        run_eval(state, step)
    summary: dict[str, Any] = {
        "run": str(run.path) if run else None,
        "steps": step,
        "train_seconds": train_seconds,
    }
    if run is not None and state.dist.is_main:
        state.algorithm.save_outputs(run, state.models, state.cfg)
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
                "eval": state.eval_rows,
                "eval_first_reward": state.eval_rows[0].get("eval/reward/score") if state.eval_rows else None,
                "eval_last_reward": state.eval_rows[-1].get("eval/reward/score") if state.eval_rows else None,
                "warnings": len(state.warnings_seen),
            }
        )
        run.write_report(_report(state, summary, rows))
    return summary


def _report(state: OnlineLoop, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """report.json: the summary, then the curves and counts of the whole run."""
    members = state.reward_set.members
    return {
        **summary,
        "reward": _summary(rows, "reward/score"),
        "kl": _summary(rows, "kl/ref"),
        "length": _summary(rows, "gen/length"),
        "per_model": {m.name: _summary(rows, f"reward/{m.name}") for m in members},
        "warnings": state.warnings_seen,
        "prompts_truncated": sum(int(r.get("gen/prompts_truncated", 0)) for r in rows),
        "retokenised_rows": dict(state.reward_set.retokenised),
        "reward_models": [
            {"name": m.name, "weight": m.weight, "shared_base": bool(getattr(m.scorer, "shared", False))}
            for m in members
        ],
        "memory_bytes": state.models.parameter_bytes(),
    }


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


__all__ = ["OnlineAlgorithm", "OnlineLoop", "run_online"]
