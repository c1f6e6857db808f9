"""Compile a model's decoder layers for training (`torch.compile`, dynamic shapes).

A profile of an `alignkit rm` step on a CPU (docs/rm.md) spends about a third of its time in
element-wise operators (RMSNorm's casts and multiplies, rotary embeddings, SiLU x up, residual adds),
each a separate pass over memory. Inductor fuses them into a few generated loops per layer, forward and
backward (Ansel et al. 2024, "PyTorch 2", ASPLOS). Only the decoder layers are compiled: all of them
share one code object, so one graph (plus a variant per checkpointing flag) serves every layer, and the
embedding, the final norm and the reward head stay eager.

Compiled layers run only while gradients are on (training steps); evaluation and scoring under
``torch.no_grad()`` call the eager forward, so they compile nothing more. `compile_layers` returns an
undo that puts the eager forwards back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["compile_layers", "compile_unavailable"]


def compile_unavailable(device: torch.device) -> str | None:
    """Why `torch.compile` cannot run here (a sentence), or None when it can.

    On a CPU inductor writes C++ and builds it with the compiler named by ``$CXX`` (else ``g++`` or
    ``clang++``); on a GPU it writes Triton kernels.
    """
    if device.type == "cpu":
        candidates = [os.environ.get("CXX"), "g++", "clang++"]
        if not any(c and shutil.which(c) for c in candidates):
            return "no C++ compiler (g++, clang++ or $CXX) is installed"
        return None
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    return f"alignkit does not compile for {device.type} devices"


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def compile_layers(model: nn.Module) -> Callable[[], None] | None:
    """Compile every decoder layer's forward for training steps; return an undo, or None (no layers found).

    Shapes are dynamic (``dynamic=True``): batches of new lengths reuse the graph instead of compiling
    again. The first training step pays for the compilation (tens of seconds on a CPU).
    """
    layers = _decoder_layers(model)
    if not layers:
        return None
    before = [layer.__dict__.get("forward") for layer in layers]  # an instance forward someone else set
    for layer in layers:
        eager = layer.forward
        compiled = torch.compile(eager, dynamic=True)

        def forward(*args, _eager=eager, _compiled=compiled, **kwargs):
            return (_compiled if torch.is_grad_enabled() else _eager)(*args, **kwargs)

        layer.forward = forward

    def undo() -> None:
        for layer, previous in zip(layers, before, strict=True):
            if previous is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = previous

    return undo
