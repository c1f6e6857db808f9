"""Memory of alignkit's own training loops (rm, ppo): activations kept for backward, and the CPU heap.

- `ActivationBudget`: checkpoint just enough decoder layers, per micro-batch, to keep the activations
  saved for the backward pass under a budget (calibrated on the run itself);
- `activation_bytes_per_token`: the estimate of what one token leaves per decoder layer;
- `release_freed_memory`: hand glibc's free heap pages back to the OS between steps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from alignkit.models.registry import head_size

__all__ = ["ActivationBudget", "activation_bytes_per_token", "release_freed_memory"]


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
    at 3.1 GB but cost 26% (faults at every allocation); on the GRPO benchmark's job a 4 MB threshold cost
    5-10% step time for no lower peak. Returns False where it cannot apply (not glibc).
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
