"""Inference operators in the ``alignkit`` namespace, defined for low call overhead.

``torch.library.custom_op`` wraps its Python function in several layers (schema inference, autograd and
ADInplaceOrView handling): about 7.5-10 microseconds a call on the 2-core AMD EPYC, against 2-4 for an
operator defined with ``torch.library.Library`` and one CPU kernel (docs/sample.md). A decode step calls
our operators about 240 times, so the difference is 1-2 ms a step. The operators defined here have no
autograd formula: they serve inference only, and their callers take a differentiable path when gradients
are on.

Each operator gets a fake (meta) implementation, so that a compiled graph (`torch.compile`) calls it as one
opaque kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NAMESPACE = "alignkit"
_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")


def define(name: str, schema: str, kernel: Callable, fake: Callable) -> torch._ops.OpOverload:
    """Define ``alignkit::<name><schema>`` with ``kernel`` for CPU tensors and ``fake`` for tracing; returns
    the operator (call it like a function).

    ``schema`` is the argument list and result, e.g. ``"(Tensor x, Tensor? bias) -> Tensor"``.
    """
    _LIBRARY.define(f"{name}{schema}")
    _LIBRARY.impl(name, kernel, "CPU")
    torch.library.register_fake(f"{NAMESPACE}::{name}", fake, lib=_LIBRARY)
    return getattr(getattr(torch.ops, NAMESPACE), name).default
