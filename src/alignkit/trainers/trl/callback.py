"""TRL -> alignkit during training: `RunCallback` turns TRL's logs and checkpoints into ours.

- TRL's log keys -> alignkit's metric names (`METRIC_NAMES`, docs/metrics.md) in ``metrics.jsonl``
  (`Run.log`), and console progress;
- HF checkpoints ``checkpoint-N`` -> our ``checkpoints/step-N`` (`move_checkpoint`), the newest kept.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from alignkit.runs import Run
from alignkit.trainers.trl.setup import Processes

# TRL's log keys -> alignkit's metric names (docs/metrics.md). Others are kept under "trl/<key>".
METRIC_NAMES = {
    "loss": "loss/total",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/lr",
    "epoch": "train/epoch",
    "entropy": "policy/entropy",
    "mean_token_accuracy": "policy/token_accuracy",
    "num_tokens": "perf/tokens",
    "rewards/chosen": "reward/chosen",
    "rewards/rejected": "reward/rejected",
    "rewards/accuracies": "reward/accuracy",
    "rewards/margins": "reward/margin",
    "logps/chosen": "logps/chosen",
    "logps/rejected": "logps/rejected",
    "logits/chosen": "logits/chosen",
    "logits/rejected": "logits/rejected",
    "kl": "kl/batch",
}
SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
)
EVAL_NOISE = ("runtime", "samples_per_second", "steps_per_second", "num_tokens", "epoch")


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, f"trl/{key}")


def eval_metric_name(key: str) -> str:
    """``eval_loss`` -> ``eval/loss``; ``eval_rewards/chosen`` -> ``eval/reward_chosen`` (see `METRIC_NAMES`)."""
    key = key.removeprefix("eval_")
    return "eval/loss" if key == "loss" else "eval/" + metric_name(key).replace("/", "_")


class RunCallback(TrainerCallback):
    """TRL -> alignkit: metrics.jsonl, console progress, checkpoint names and rotation, eval hooks."""

    def __init__(self, run: Run, procs: Processes, keep: int, eval_hook: Callable[[int], dict] | None = None):
        self.run, self.procs, self.keep, self.eval_hook = run, procs, keep, eval_hook
        self.tracker: Any = None
        self.rows: list[dict[str, Any]] = []  # train rows logged in this session
        self.eval_rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self._last: tuple[float, float] | None = None  # (time, cumulative tokens) at the previous log
        self.local_steps = 0  # optimizer steps this process took in this session
        self.start = time.perf_counter()
        self._every: tuple[int, Callable[[int], Any]] | None = None

    def every(self, steps: int, fn: Callable[[int], Any]) -> None:
        """Call ``fn(step)`` on every process after each ``steps`` optimizer steps (not at the last step)."""
        self._every = (steps, fn)

    # ---- training progress
    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self._last = (self.start, 0.0)
        if self.tracker is not None:
            self.tracker.set(total=state.max_steps)
            if state.global_step:
                self.tracker.advance(state.global_step)

    def on_epoch_begin(self, args, state, control, **kwargs):
        # transformers' LengthGroupedSampler draws its order from the global torch RNG when the epoch's
        # iterator starts, so anything that used the RNG before (a reference pre-pass, a resume) would
        # change the data order; seeding here makes it depend on (data_seed, epoch) only.
        if args.train_sampling_strategy == "group_by_length":
            torch.manual_seed(
                (args.data_seed if args.data_seed is not None else args.seed) + math.floor(state.epoch + 1e-6)
            )

    def on_step_end(self, args, state, control, **kwargs):
        self.local_steps += 1
        if self.tracker is not None:
            self.tracker.advance(1)
        if self._every is not None:
            steps, fn = self._every
            if state.global_step % steps == 0 and state.global_step < state.max_steps:
                fn(state.global_step)
        if args.save_strategy != "no" and state.global_step >= state.max_steps:
            control.should_save = True  # a checkpoint at the end too
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        if any(k in logs for k in SUMMARY_KEYS):
            self.summary.update(logs)
            return
        if any(k.startswith("eval_") for k in logs):
            row = {
                eval_metric_name(k): v
                for k, v in logs.items()
                if k.startswith("eval_") and not k.endswith(EVAL_NOISE)
            }
            self.eval_rows.append({"step": state.global_step, **row})
            self.run.log(state.global_step, row)
            return
        row = {metric_name(k): v for k, v in logs.items()}
        now = time.perf_counter()
        tokens = float(logs.get("num_tokens", 0.0))
        if self._last is not None and tokens:
            then, before = self._last  # TRL counts tokens from 0 in each session, resumed or not
            if now > then and tokens >= before:
                row["perf/tokens_per_s"] = (tokens - before) / (now - then)
            self._last = (now, tokens)
        self.rows.append({"step": state.global_step, **row})
        self.run.log(state.global_step, row)
        if self.tracker is not None and "loss" in logs:
            self.tracker.set(status=f"loss {logs['loss']:.4f}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.eval_hook is not None:
            self.eval_hook(state.global_step)

    # ---- checkpoints: HF's output_dir/checkpoint-N -> run/checkpoints/step-N, atomically renamed
    def on_save(self, args, state, control, **kwargs):
        self.procs.barrier()  # every process has written its part (rng_state_<rank>.pth)
        if self.procs.main:
            source = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if source.is_dir():
                move_checkpoint(source, self.run, state.global_step, self.keep)
        self.procs.barrier()


def move_checkpoint(source: Path, run: Run, step: int, keep: int) -> Path:
    """Rename a finished HF checkpoint into ``checkpoints/step-N`` and keep only the newest ``keep``."""
    target = run.checkpoints_dir / f"step-{step}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)  # same filesystem: atomic; a half-written checkpoint never gets the name
    for old in run.checkpoints()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target
