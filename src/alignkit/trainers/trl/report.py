"""What a TRL-backed run reports: the shared fields of report.json and trends of its logged series.

- `TrainResult`: what training produced (steps, time, tokens, the checkpoint it resumed from);
- `base_report` / `run_facts`: the fields every TRL-backed command reports first / last;
- `trend` / `series` / `last`: summaries of the logged metric rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.runs import Run
from alignkit.trainers.trl.callback import RunCallback
from alignkit.trainers.trl.setup import Setup


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    train_tokens: float
    resumed_from: str | None


def trend(values: Sequence[float], parts: int = 4) -> dict[str, Any] | None:
    """First and last quarter means of a logged series, and whether it fell throughout.

    "Fell throughout": the series split into ``parts`` equal chunks has strictly decreasing chunk means
    (needs at least ``parts`` values). Chunk means smooth the batch-to-batch noise of per-step logs.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(vals) < 2:
        return None
    k = min(parts, len(vals))
    bounds = [round(i * len(vals) / k) for i in range(k + 1)]
    means = [sum(vals[a:b]) / (b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    falls = len(vals) >= parts and all(b < a for a, b in zip(means, means[1:], strict=False))
    return {"first": means[0], "last": means[-1], "change": means[-1] - means[0], "falls_throughout": falls}


def series(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def last(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = series(rows, key)
    return values[-1] if values else None


def base_report(
    command: str, run: Run, setup: Setup, result: TrainResult, callback: RunCallback, process_steps: list[int]
) -> dict[str, Any]:
    """The fields every TRL-backed command reports first (the shape `--json` prints)."""
    seconds = result.train_seconds
    return {
        "command": command,
        "run": str(run.path),
        "steps": result.steps,
        "train_seconds": seconds,
        "trainer_runtime": callback.summary.get("train_runtime"),  # HF's own measure of the training loop
        "train_tokens": result.train_tokens,
        "tokens_per_s": result.train_tokens / seconds if seconds > 0 and result.train_tokens else None,
        "final_loss": last(callback.rows, "loss/total"),
    }


def run_facts(setup: Setup, result: TrainResult, process_steps: list[int]) -> dict[str, Any]:
    """The fields every TRL-backed command reports last: where it ran and what happened to the data."""
    return {
        "precision": setup.precision.name,
        "world_size": setup.procs.world,
        "process_steps": process_steps,
        "resumed_from": result.resumed_from,
        "data": setup.stats.as_dict(),
    }
