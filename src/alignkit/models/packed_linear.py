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

Layers that a forward calls on the same input (`Siblings`: q/k/v, gate/up) are packed as one
concatenated weight and served by one matmul; :func:`packed_linears` finds them with a probe forward.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from alignkit.models import ops

logger = logging.getLogger(__name__)

MIN_DIM = 64  # smaller matrices (LoRA A/B, tiny heads) gain nothing from packing
MEMORY_SHARE = 0.25  # pack only if the copies take at most this share of the memory available now

Key = tuple[int, int, tuple[int, ...]]

# packed copies, by the keys of the weights (and biases) they were made from: one weight, or the
# concatenated weights of sibling layers
_PACKED: dict[tuple[Key | None, ...], tuple[torch.Tensor, torch.Tensor | None]] = {}


def _key(tensor: torch.Tensor) -> Key:
    return (tensor.data_ptr(), tensor._version, tuple(tensor.shape))


def _keys(weights: list[torch.Tensor], biases: list[torch.Tensor | None]) -> tuple[Key | None, ...]:
    return (*(_key(w) for w in weights), *(None if b is None else _key(b) for b in biases))


def _packed_linear(
    x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor | None]
) -> torch.Tensor:
    """``torch.cat([F.linear(x, w, b) for w, b in zip(weights, biases)], -1)``, by one matmul on the packed
    copy of the concatenated weights when one is current, else plainly."""
    entry = _PACKED.get(_keys(weights, biases))
    if entry is None:
        outputs = [F.linear(x, w, b) for w, b in zip(weights, biases, strict=True)]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
    packed, bias = entry
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def _packed_linear_fake(x: torch.Tensor, weights: list[torch.Tensor], biases: list) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], sum(w.shape[0] for w in weights)))


packed_linear = ops.define(
    "packed_linear",
    "(Tensor x, Tensor[] weights, Tensor?[] biases) -> Tensor",
    _packed_linear,
    _packed_linear_fake,
)


def _pack(weights: list[torch.Tensor], biases: list[torch.Tensor | None], rows: int) -> tuple:
    """The packed copy of the concatenated weights and the concatenated bias (None when no layer has one)."""
    weight = weights[0] if len(weights) == 1 else torch.cat(weights)
    bias = None
    if any(b is not None for b in biases):
        parts = [
            b if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases, strict=True)
        ]
        bias = parts[0] if len(parts) == 1 else torch.cat(parts)
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows), bias


class PackedLinear(nn.Linear):
    """An ``nn.Linear`` whose forward goes through `packed_linear` (set as a layer's class inside
    :func:`packed_linears`; a class, not a per-layer function, so a compiled graph stays valid across
    calls)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return packed_linear(x, [self.weight], [self.bias])


class Siblings:
    """Linear layers that a forward calls on the same input (a transformer's q/k/v projections, its MLP's
    gate and up projections), found by :func:`find_siblings`. The first of them to be called computes all
    their outputs with one matmul on their concatenated packed weights, and each of the others takes its
    slice when it is called on that same input (the same tensor object), in any order. One matmul of
    960 or 3,072 columns instead of three or two smaller ones: 30 layers of SmolLM2-135M at 128 rows
    measured 22.2 ms against 24.4 ms for the separate calls (docs/sample.md)."""

    def __init__(self, members: list[nn.Linear]):
        self.members = members
        self.sizes = [m.out_features for m in members]
        self.clear()

    def clear(self) -> None:
        self.input: torch.Tensor | None = None
        self.outputs: list[torch.Tensor | None] = [None] * len(self.members)
        self.left = 0

    def output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self.input is x and self.outputs[index] is not None:
            out, self.outputs[index] = self.outputs[index], None
            self.left -= 1
            if self.left == 0:
                self.clear()
            return out
        fused = packed_linear(x, [m.weight for m in self.members], [m.bias for m in self.members])
        outputs: list[torch.Tensor | None] = list(fused.split(self.sizes, dim=-1))
        out, outputs[index] = outputs[index], None
        self.input, self.outputs, self.left = x, outputs, len(outputs) - 1
        return out


class SiblingLinear(PackedLinear):
    """A `PackedLinear` that is one of several `Siblings` (attributes ``siblings`` and ``sibling_index``)."""

    siblings: Siblings
    sibling_index: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype or torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return self.siblings.output(self.sibling_index, x)


def find_siblings(layers: list[nn.Linear], probe: Callable[[], object]) -> list[list[nn.Linear]]:
    """Groups of ``layers`` that ``probe()`` (a forward of the model) calls on the same input tensor, each
    layer called exactly once, in call order. Layers that share no input, or that are called more than
    once, are in no group; none when the probe fails."""
    calls: list[tuple[nn.Linear, torch.Tensor]] = []  # holds the inputs, so that no id is reused meanwhile
    hooks = [m.register_forward_pre_hook(lambda m, args: calls.append((m, args[0]))) for m in layers]
    try:
        with torch.no_grad():
            probe()
    except Exception as error:  # an optimisation only: the model's real forward reports its own errors
        logger.info("no sibling layers packed: the probe forward failed (%s)", error)
        return []
    finally:
        for hook in hooks:
            hook.remove()
    times: dict[int, int] = {}
    for module, _ in calls:
        times[id(module)] = times.get(id(module), 0) + 1
    by_input: dict[int, list[nn.Linear]] = {}
    for module, x in calls:
        if times[id(module)] == 1 and isinstance(x, torch.Tensor):
            by_input.setdefault(id(x), []).append(module)
    return [group for group in by_input.values() if len(group) > 1]


def packing_unavailable(model: nn.Module) -> str | None:
    """Why weights cannot be packed for this model (a sentence), or None when they can."""
    weight = next(model.parameters(), None)
    if weight is None or weight.device.type != "cpu":
        return "the model is not on a CPU"
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU or torch build has no oneDNN bf16 support"
    return None


def available_memory() -> int | None:
    """Bytes of memory available now (MemAvailable), or None when unknown."""
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
def packed_linears(
    model: nn.Module, rows: int = 128, probe: Callable[[], object] | None = None
) -> Iterator[int]:
    """Within this context the model's bf16 ``nn.Linear`` layers (both sides >= 64) use packed weights.

    For inference only: a layer called with gradients on takes the plain path. ``rows`` is the batch the
    packing is tuned for (any batch works). ``probe``, a small forward of the model, is run once first to
    find `Siblings` (layers called on the same input), whose weights are then packed together. Yields the
    number of layers packed (0 when packing is not possible here or the copies would take more than a
    quarter of the memory available now; the reason is logged). Every layer's class is restored on exit
    and the copies are freed.
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
        available = available_memory()
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
    groups = find_siblings(layers, probe) if probe is not None else []
    grouped = {id(m) for group in groups for m in group}
    groups += [[m] for m in layers if id(m) not in grouped]
    keys = []
    try:
        with torch.no_grad():
            for group in groups:
                weights, biases = [m.weight for m in group], [m.bias for m in group]
                key = _keys(weights, biases)
                if key not in _PACKED:
                    _PACKED[key] = _pack(weights, biases, rows)
                    keys.append(key)
                if len(group) == 1:
                    group[0].__class__ = PackedLinear
                    continue
                siblings = Siblings(group)
                for index, module in enumerate(group):
                    module.__class__ = SiblingLinear
                    module.siblings, module.sibling_index = siblings, index
        yield len(layers)
    finally:
        for module in layers:
            if type(module) is SiblingLinear:
                module.siblings.clear()
                del module.siblings, module.sibling_index
            module.__class__ = nn.Linear
        for key in keys:
            _PACKED.pop(key, None)
