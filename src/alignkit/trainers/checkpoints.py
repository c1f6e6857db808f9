"""Checkpoints of alignkit's own training loops (rm, ppo): write one atomically, read it back exactly.

- `save_checkpoint` / `load_checkpoint`: trainable weights + optimizer + scheduler + RNG + the trainer's
  position, enough to continue exactly where a run stopped;
- `rng_state` / `set_rng_state`: the global torch and Python RNG states a checkpoint carries.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from alignkit.errors import TrainingError

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The global torch and Python RNG states (what `set_rng_state` restores)."""
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states `rng_state` returned (the Python state may come back as a list)."""
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(state["python"]) if not isinstance(state["python"], tuple) else state["python"])


def save_checkpoint(
    run: Any,
    step: int,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    keep: int = 2,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``checkpoints/step-N`` atomically (a temp dir renamed into place).

    Files: ``trainable.safetensors`` (the trainable weights, fp32), ``optimizer.pt``
    (AdamW moments, the scheduler and RNG states; read back with
    ``torch.load(weights_only=True)``), ``trainer_state.json`` (``step`` + the
    trainer's ``state``: data cursor, counters). ``extra(dir)`` may add more.
    """

    def write(d: Path) -> None:
        save_file(
            {n: p.detach().float().contiguous().cpu() for n, p in params.items()},
            str(d / "trainable.safetensors"),
        )
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
            d / "optimizer.pt",
        )
        (d / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=2) + "\n")
        if extra is not None:
            extra(d)

    return run.save_checkpoint(step, write, keep=keep)


def load_checkpoint(
    path: Path,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote (in place) and return the trainer state (with ``step``)."""
    path = Path(path)
    weights = load_file(str(path / "trainable.safetensors"))
    missing = sorted(set(params) - set(weights))
    if missing:
        raise TrainingError(
            f"{path}: checkpoint lacks trainable weights {missing[:3]}; was it written by this run?"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.dtype))
    # Our own file; weights_only all the same. On the CPU first: load_state_dict moves each moment to its
    # parameter's device, so a run saved on a GPU resumes anywhere.
    blob = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"])
    return json.loads((path / "trainer_state.json").read_text())
