"""LoRA layers run merged while sampling: one linear layer with ``W0 + s B A`` instead of the low-rank path.

The merge rule is LoRA's own (Hu et al. 2021, arXiv:2106.09685, eq. 3); see `alignkit.models.lora`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn

MERGE_MEMORY_SHARE = 0.25  # merge only if the merged copies take at most this share of the memory available


def _mergeable(layer: LoraLinear) -> bool:
    """Whether ``layer`` runs one active adapter on the plain path (the cases `fused_lora_forward` takes)."""
    active = layer.active_adapters
    name = active[0] if len(active) == 1 else None
    return (
        name is not None
        and not layer.disable_adapters
        and not layer.merged
        and name in layer.lora_A
        and name not in getattr(layer, "lora_variant", {})
        and not getattr(layer, "use_dora", {}).get(name, False)
        and type(layer.base_layer) is nn.Linear
        and layer.lora_B[name].bias is None
    )


def _merged_forward(base: nn.Module):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs:  # per-row adapters (adapter_names=...) cannot run on one merged weight
            raise RuntimeError("a LoRA layer merged for inference takes no extra arguments")
        return base(x)

    return forward


@contextlib.contextmanager
def merged_for_inference(model: nn.Module) -> Iterator[int]:
    """Inside, every LoRA linear layer runs as one linear layer with the merged weight ``W0 + s B A``.

    For inference only (sampling): the adapter's ``B A x`` path costs a few small kernels per layer per
    forward, which at a decode step's handful of rows take as long as the base matmul itself (8 rows x 32
    tokens of SmolLM2-135M: 2.76 s with it, 2.15 s merged; docs/implementation_details.md). The merged
    weight is computed in float32 and rounded once to the layer's dtype, so outputs match the unmerged
    forward up to that rounding. Nothing of ``model`` is modified in place: each base layer gets a new weight tensor for the
    duration, and its own weight object (and the layer's forward) come back on exit, so a following
    training step sees exactly the weights it had.

    Yields the number of layers merged: 0 (and the model unchanged) when some active LoRA layer is of a
    kind this does not cover (several active adapters, DoRA, a bias on B, a non-``nn.Linear`` base), when
    the adapters are disabled, or when the copies would take more than ``MERGE_MEMORY_SHARE`` of the
    memory available now.
    """
    from alignkit.models.packed_linear import available_memory

    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    if not layers or not all(_mergeable(m) for m in layers):
        yield 0
        return
    needed = sum(m.base_layer.weight.numel() * m.base_layer.weight.element_size() for m in layers)
    available = available_memory()
    if available is not None and needed > MERGE_MEMORY_SHARE * available:
        yield 0
        return
    saved = []
    try:
        with torch.no_grad():
            for layer in layers:
                name = layer.active_adapters[0]
                base = layer.base_layer
                weight = base.weight  # (d_out, d_in)
                merged = torch.addmm(
                    weight.float(),
                    layer.lora_B[name].weight.float(),  # (d_out, r)
                    layer.lora_A[name].weight.float(),  # (r, d_in)
                    alpha=layer.scaling[name],
                ).to(weight.dtype)
                saved.append((layer, weight, layer.__dict__.get("forward")))
                base.weight = nn.Parameter(merged, requires_grad=False)
                layer.forward = _merged_forward(base)
        yield len(layers)
    finally:
        for layer, weight, forward in saved:
            layer.base_layer.weight = weight
            if forward is None:
                del layer.forward
            else:
                layer.forward = forward
