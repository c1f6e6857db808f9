"""The thin training-loop toolkit that alignkit's own trainers share (rm now, ppo later).

Each piece is one small function, so a trainer reads top to bottom and keeps its
algorithm visible:

- `build_optimizer` / `build_scheduler` / `plan_steps`: AdamW with linear warm-up then
  cosine decay over a step count fixed by the config;
- `length_grouped_batches` / `micro_batches`: a reproducible data order (seed + epoch)
  with batches of similar length, and a cursor that a resumed run can restart from;
- `check_finite`: the NaN guard (raises `TrainingError`; the last checkpoint was written
  atomically before, so it is intact).

Checkpoints are `trainers.checkpoints`, activation and heap memory `trainers.memory`, the accelerate
process state `trainers.processes`; the trainable weights are `models.lora.trainable_parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignkit.errors import TrainingError

__all__ = [
    "BatchCursor",
    "build_optimizer",
    "build_scheduler",
    "check_finite",
    "length_grouped_batches",
    "micro_batches",
    "plan_steps",
]


# ------------------------------------------------------- optimizer, schedule
def build_optimizer(params: dict[str, nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019); decay only matrices, not biases, norms or the scalar head's bias."""
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.999), eps=1e-8)


def plan_steps(micro_batches_per_epoch: int, grad_accum: int, epochs: float, max_steps: int) -> int:
    """Optimizer steps of a run: ``max_steps`` when given (> 0), else ``epochs`` passes over the data."""
    if max_steps > 0:
        return max_steps
    return max(1, math.ceil(micro_batches_per_epoch * epochs / grad_accum))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``ceil(warmup_ratio * total_steps)`` steps, then cosine decay to 0.

    The schedule length is the planned total, so a run resumed with the same config
    follows the same learning-rate curve as one that was never interrupted.
    """
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        # LambdaLR calls this with the number of steps taken so far; the lr of optimizer
        # step s (1-based) is factor(s - 1).
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_finite(value: torch.Tensor | float, step: int, what: str, checkpoint: Path | None) -> None:
    """Stop the run (``TrainingError``) on a NaN or infinite loss / gradient norm."""
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    if math.isfinite(v):
        return
    where = (
        f"the last checkpoint ({checkpoint}) is intact: --resume continues from it"
        if checkpoint
        else ("no checkpoint was written yet")
    )
    raise TrainingError(
        f"{what} became {v} at step {step}; stopped. {where}. "
        "Try a lower --lr, --dtype fp32, or check the data for extreme margins."
    )


# ------------------------------------------------------------------ batching
def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group: bool = True, mega: int = 50
) -> list[list[int]]:
    """One epoch's batches of example indices, reproducible from ``(seed, epoch)``.

    With ``group`` the shuffled examples are cut into mega-batches of ``mega x
    batch_size``, each sorted by length (longest first) and cut into batches, so a
    batch holds examples of similar length and little padding; the batch order is
    then shuffled, with the longest batch first so an out-of-memory shows on the first
    step (the idea of TRL / transformers' ``group_by_length`` LengthGroupedSampler).
    """
    n = len(lengths)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen).tolist()
    if not group:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    batches: list[list[int]] = []
    size = mega * batch_size
    for start in range(0, n, size):
        chunk = sorted(order[start : start + size], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=gen).tolist()
    batches = [batches[i] for i in perm]
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    batches.insert(0, batches.pop(longest))
    return batches


@dataclass
class BatchCursor:
    """Where the data stream stands: ``epoch`` and the next micro-batch's index in it."""

    epoch: int = 0
    batch: int = 0


def micro_batches(
    make_epoch: Callable[[int], list[list[int]]], cursor: BatchCursor, shard: tuple[int, int] = (0, 1)
) -> Iterator[list[int]]:
    """Endless stream of micro-batches, epoch after epoch, starting at ``cursor`` (advanced in place).

    ``shard = (rank, world)``: under data parallelism each process takes every
    world-th batch of the same order, so all processes agree on the data without
    talking; the cursor counts batches of the whole order.
    """
    rank, world = shard
    while True:
        batches = make_epoch(cursor.epoch)
        usable = len(batches) - len(batches) % world  # equal work on every process
        if usable == 0:
            raise ValueError("fewer batches than processes: lower --batch-size or add data")
        while cursor.batch < usable:
            index = cursor.batch + rank
            cursor.batch += world
            yield batches[index]
        cursor.epoch += 1
        cursor.batch = 0
