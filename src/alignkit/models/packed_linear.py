"""bf16 linear layers on a CPU with their weights packed once for oneDNN, for inference (sampling).

``torch.nn.functional.linear`` hands oneDNN a plain row-major weight, and oneDNN reorders it into its
blocked layout inside every call. At a decode step's shapes that reorder is a large share of the
matmul: 128 rows x SmolLM2-135M's linears measured 490-780 GFLOP/s plain against 670-860 packed on the
2-core AMD EPYC (docs/sample.md). :func:`packed_linears` reorders each weight once, when sampling
starts, and routes the layer through ``torch.ops.mkldnn._linear_pointwise`` on the packed copy (the
kernel inductor's ``freezing`` uses; the results are the same as ``F.linear``'s, bit for bit, in our
tests).

Safety: the packed copies are looked up by the weight's storage, version counter and shape, so a weight
changed in place (an optimiser step) or replaced falls back to ``F.linear`` instead of using a stale copy;
they are dropped when the context exits. The layers are wrapped in an operator (``alignkit::packed_linear``,
`alignkit.models.ops`), so a compiled decode step (`torch.compile`) calls it as one opaque kernel.
Extra memory: one packed copy of every packed weight, and only when it fits (see
:func:`packed_linears`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from alignkit.models import ops

logger = logging.getLogger(__name__)

MIN_DIM = 64  # smaller matrices (LoRA A/B, tiny heads) gain nothing from packing
MEMORY_SHARE = 0.25  # pack only if the copies take at most this share of the memory available now

_PACKED: dict[tuple[int, int, int, int], torch.Tensor] = {}


def _key(weight: torch.Tensor) -> tuple[int, int, int, int]:
    return (weight.data_ptr(), weight._version, weight.shape[0], weight.shape[1])


def _packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` with the packed copy of ``weight`` when one is current, else plain."""
    packed = _PACKED.get(_key(weight))
    if packed is None:
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def _packed_linear_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


packed_linear = ops.define(
    "packed_linear", "(Tensor x, Tensor weight, Tensor? bias) -> Tensor", _packed_linear, _packed_linear_fake
)


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` whose forward goes through `packed_linear` (set as a layer's class inside
    :func:`packed_linears`; a class, not a per-layer function, so a compiled graph stays valid across
    calls)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return packed_linear(x, self.weight, self.bias)


def packing_unavailable(model: nn.Module) -> str | None:
    """Why weights cannot be packed for this model (a sentence), or None when they can."""
    weight = next(model.parameters(), None)
    if weight is None or weight.device.type != "cpu":
        return "the model is not on a CPU"
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU or torch build has no oneDNN bf16 support"
    return None


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@contextlib.contextmanager
def packed_linears(model: nn.Module, rows: int = 128) -> Iterator[int]:
    """Within this context the model's bf16 ``nn.Linear`` layers (both sides >= 64) use packed weights.

    For inference only: a layer called with gradients on takes the plain path. ``rows`` is the batch the
    packing is tuned for (any batch works). Yields the number of layers packed (0 when packing is not
    possible here or the copies would take more than a quarter of the memory available now; the reason
    is logged). Every layer's forward is restored on exit and the copies are freed.
    """
    reason = packing_unavailable(model)
    layers = [
        m
        for m in model.modules()
        if type(m) is nn.Linear
        and m.weight.dtype == torch.bfloat16
        and min(m.weight.shape) >= MIN_DIM
        and "forward" not in m.__dict__
    ]
    if reason is None and layers:
        needed = sum(m.weight.numel() * m.weight.element_size() for m in layers)
        available = _available_memory()
        if available is not None and needed > MEMORY_SHARE * available:
            reason = (
                f"packed weights would take {needed / 2**30:.1f} GiB of the {available / 2**30:.1f} GiB "
                "available"
            )
    if reason is not None or not layers:
        if reason is not None:
            logger.info("linear layers run unpacked: %s", reason)
        yield 0
        return
    keys = []
    try:
        with torch.no_grad():
            for module in layers:
                key = _key(module.weight)
                if key not in _PACKED:
                    _PACKED[key] = torch.ops.mkldnn._reorder_linear_weight(module.weight, rows)
                    keys.append(key)
                module.__class__ = PackedLinear
        yield len(layers)
    finally:
        for module in layers:
            module.__class__ = nn.Linear
        for key in keys:
            _PACKED.pop(key, None)
