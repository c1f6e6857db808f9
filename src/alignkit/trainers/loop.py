"""The thin training-loop toolkit that alignkit's own trainers share (rm now, ppo later).

Each piece is one small function, so a trainer reads top to bottom and keeps its
algorithm visible:

- `build_optimizer` / `build_scheduler` / `plan_steps`: AdamW with linear warm-up then
  cosine decay over a step count fixed by the config;
- `length_grouped_batches` / `micro_batches`: a reproducible data order (seed + epoch)
  with batches of similar length, and a cursor that a resumed run can restart from;
- `check_finite`: the NaN guard (raises `TrainingError`; the last checkpoint was written
  atomically before, so it is intact);
- `save_checkpoint` / `load_checkpoint`: trainable weights + optimizer + scheduler + RNG
  + the trainer's position, enough to continue exactly where a run stopped;
- `fresh_accelerate_state`: each command in a process starts from a clean accelerate state;
  `end_process_group`: under a launcher, the process group is destroyed at exit.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from alignkit.errors import TrainingError
from alignkit.models.registry import head_size

__all__ = [
    "ActivationBudget",
    "BatchCursor",
    "build_optimizer",
    "build_scheduler",
    "check_finite",
    "length_grouped_batches",
    "load_checkpoint",
    "end_process_group",
    "fresh_accelerate_state",
    "micro_batches",
    "plan_steps",
    "release_freed_memory",
    "save_checkpoint",
    "trainable_parameters",
]


def fresh_accelerate_state() -> None:
    """Forget accelerate's process-wide state that an earlier command in this process left behind.

    accelerate keeps one state per process (device, mixed precision, gradient accumulation). A
    second command in the same process (the demo, a notebook, the tests) would inherit it: a CPU run
    after a GPU one fails (``AcceleratorState has already been initialized``), and an fp32 run after
    a bf16 TRL run silently trains under the old bf16 autocast. A single process therefore starts
    each command from a clean state. Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1)
    the state belongs to the launcher and is never touched; the process group the command is about to
    join is then torn down at exit instead (`end_process_group`).
    """
    from accelerate.state import AcceleratorState, GradientState

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        atexit.unregister(end_process_group)  # once, however many commands run
        atexit.register(end_process_group)
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def end_process_group() -> None:
    """Destroy the default process group, if one is up (run at exit under a launcher).

    A process that leaves its gloo group to interpreter shutdown can die with SIGABRT ("terminate called
    without an active exception"): gloo's worker threads still hold work whose tensors reference Python
    objects that are being torn down (pytorch/pytorch#190489; the mechanism is described in
    pytorch/pytorch#179291). We saw it once in our two-process DPO test. Destroying the group at exit,
    while the interpreter is still whole, avoids it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------- activation memory
class ActivationBudget:
    """Checkpoint just enough decoder layers, per micro-batch, to keep saved activations under a budget.

    Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory
    Cost") keeps only a layer's input and recomputes the layer in the backward pass. All
    or nothing wastes compute on short batches; here each micro-batch of R rows x T tokens
    checkpoints the fewest layers ``k`` with ``full * (L - k) + R T per_layer * kept * k <=
    budget``, where ``full = R T per_layer + R T^2 per_score`` is what one whole layer
    keeps, so short batches run at full speed and the longest ones still fit.
    ``per_layer`` is an estimate of the bytes one token leaves per layer
    (`activation_bytes_per_token`); ``per_score`` the bytes an attention that stores its
    probabilities keeps per (query, key) pair (heads x 2 in bf16, `models.cpu_attention`;
    0 for SDPA's kernel, which stores none). ``budget_bytes=None`` checkpoints no layer;
    ``always=True`` checkpoints every layer.

    The estimate is calibrated on the run itself: inside :meth:`measure` (one micro-batch's
    forward) a ``saved_tensors_hooks`` pack hook adds up the bytes autograd really keeps
    (each storage once, the model's own weights excluded), and ``scale`` becomes what the
    layers kept whole over their estimate. Later plans use the scaled estimate. This matters
    for compiled layers (`models.compile`), whose partitioner recomputes cheap element-wise
    results instead of saving them: SmolLM2's layers keep about two thirds of the eager bytes.
    """

    def __init__(
        self,
        model: nn.Module,
        budget_bytes: float | None,
        per_layer: float,
        always: bool = False,
        per_score: float = 0.0,
    ):
        from transformers.modeling_layers import GradientCheckpointingLayer

        self.layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.budget, self.per_layer, self.always, self.per_score = budget_bytes, per_layer, always, per_score
        self.kept = 0.05  # a checkpointed layer still keeps its input (H values of ~20 H per token)
        self.scale = 1.0  # measured / estimated saved bytes, from the last measured micro-batch
        self.last_saved_bytes = 0  # what the last measured forward kept for its backward
        self._planned = (0, 0, 0)  # rows, width, k of the current plan
        self._weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        if self.layers and (always or budget_bytes is not None):
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            # Non-reentrant: works with a frozen embedding (no input that requires grad) and with autocast.
            kwargs = {"use_reentrant": False}
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x name
                base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.plan(0, 0)

    def layers_to_checkpoint(self, rows: int, width: int) -> int:
        n = len(self.layers)
        if self.always:
            return n
        tokens = rows * width
        if self.budget is None or tokens == 0:
            return 0
        full = self._full_layer(rows, width) * self.scale
        if full * n <= self.budget:
            return 0
        saved_each = full - tokens * self.per_layer * self.kept * self.scale  # what checkpointing one saves
        return min(n, math.ceil((full * n - self.budget) / saved_each))

    def _full_layer(self, rows: int, width: int) -> float:
        """Estimated bytes one layer keeps whole for rows x width tokens (unscaled)."""
        return rows * width * self.per_layer + rows * width * width * self.per_score

    def estimate(self, rows: int, width: int, k: int) -> float:
        """Estimated (unscaled) bytes all layers keep with the first ``k`` checkpointed."""
        n = len(self.layers)
        return (n - k) * self._full_layer(rows, width) + k * rows * width * self.per_layer * self.kept

    def plan(self, rows: int, width: int) -> int:
        """Set each layer's checkpointing flag for a micro-batch of ``rows`` x ``width`` (padded) tokens; return k."""
        k = self.layers_to_checkpoint(rows, width)
        for i, layer in enumerate(self.layers):
            layer.gradient_checkpointing = i < k
        self._planned = (rows, width, k)
        return k

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Count what the forward inside keeps for the backward pass (``last_saved_bytes``); rescale the
        estimate to it. Each storage is counted once (views and tensors saved by several operators share
        one), the model's weights not at all.
        """
        rows, width, k = self._planned
        if not torch.is_grad_enabled():
            yield
            return
        seen: set[int] = set()
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer not in seen and pointer not in self._weights:
                seen.add(pointer)
                total += storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield
        self.last_saved_bytes = total
        # What the whole layers kept: the total less the estimated inputs of the checkpointed ones (a
        # forward with every layer checkpointed says nothing about whole layers).
        whole = (len(self.layers) - k) * self._full_layer(rows, width)
        if whole > 0:
            kept = k * rows * width * self.per_layer * self.kept * self.scale
            self.scale = min(10.0, max(0.1, (total - kept) / whole))


@functools.cache
def _glibc():
    """glibc through ctypes, or None where there is none (not Linux, or a libc without malloc_trim)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc has it; musl does not
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> bool:
    """Hand the free pages of glibc's heap back to the OS (``malloc_trim(0)``); call it between steps.

    PyTorch's CPU allocator has no cache: every activation is a glibc malloc/free. glibc keeps freed
    blocks in its heap and reuses them, and its dynamic mmap threshold (up to 32 MB) soon puts even
    large tensors there, so the heap grows with every batch shape seen, fragmented: on `alignkit rm`
    over 60 steps of hh-rlhf (SmolLM2-135M, 8 pairs, compiled layers) resident memory climbed from 2.0
    to 4.1 GB. Trimming once per step returns the free pages, so each step starts from what is live:
    peak 3.3 GB (eval included), for 7% more step time (the pages are faulted in again once per step).
    Unmapping every large tensor at free instead (a 1 MB mmap threshold, the previous approach) peaked
    at 3.1 GB but cost 26% (faults at every allocation). Returns False where it cannot apply (not glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def activation_bytes_per_token(config: Any, lora_r: int = 0, dtype_bytes: int = 2) -> float:
    """Estimated bytes a Llama-style decoder layer keeps for the backward pass, per token.

    Counted with ``torch.autograd.graph.saved_tensors_hooks`` on SmolLM2-135M (bf16 base,
    LoRA on all linears): the MLP keeps 4 x I values (gate, up, SiLU, product), attention
    q, k, v and its output (2 x heads + 2 x kv heads) x head_dim, the two norm outputs
    2 x H, LoRA 7 x r; transformers' RMSNorm also keeps an fp32 copy of its input (2 x H
    fp32). For SmolLM2 that is 22.5 KB; the peak RSS measured with glibc's mmap threshold fixed at
    1 MB (large tensors unmapped at free) grew by 21 KB per token and layer.
    """
    h = config.hidden_size
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = head_size(config)
    inter = getattr(config, "intermediate_size", 4 * h)
    values = 4 * inter + 2 * h + (2 * heads + 2 * kv) * head_dim + 7 * lora_r
    return float(values * dtype_bytes + 2 * h * 4)


# ------------------------------------------------------- optimizer, schedule
def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name -> parameter for every parameter that requires grad (stable order)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


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


# --------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
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
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()},
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
    _set_rng_state(blob["rng"])
    return json.loads((path / "trainer_state.json").read_text())
