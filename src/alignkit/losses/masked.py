"""Masked statistics: means, variances and whitening over the positions a bool mask keeps.

Every PPO quantity lives on (B, T) tensors where only the response tokens count
(``response_mask``, True on real response tokens; prompt and padding False). These
helpers reduce over the masked entries only, and never return NaN for an empty mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_mean", "masked_var", "masked_whiten"]


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is True.

    ``sum(x * m) / max(sum(m), 1)``: an all-False mask gives 0, not NaN. Masked-out
    entries are dropped with ``where``, so NaN or inf there cannot leak in.

    Args:
        x: any shape, e.g. (B, T).
        mask: bool, same shape as ``x``.
        dim: reduce over this dimension only (e.g. ``dim=1`` gives a (B,) per-row mean);
            None reduces over everything to a 0-d tensor.
    """
    mask = mask.bool()
    total = torch.where(mask, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / mask.sum().clamp_min(1)
    return total.sum(dim) / mask.sum(dim).clamp_min(1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over all positions where ``mask`` is True (0-d).

    ``unbiased`` applies Bessel's correction n / (n - 1) (as ``torch.var`` does);
    with n <= 1 masked entries the result is 0 instead of NaN.
    """
    mask = mask.bool()
    centred = x - masked_mean(x, mask)
    var = masked_mean(centred * centred, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp_min(1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Whiten ``x`` with the mean and (unbiased) variance of its masked entries.

    ``(x - μ) / sqrt(σ² + eps)`` on masked entries, then ``+ μ`` back when
    ``shift_mean`` is False (scale only). Advantages are whitened with the shift
    and, optionally, rewards without it (Huang et al. 2024, details on reward and
    advantage whitening). Statistics are over the whole batch, not per row.

    Invariants (on positions where ``mask`` is True): masked mean 0 (``shift_mean``)
    or unchanged (not ``shift_mean``); masked unbiased variance σ² / (σ² + eps) ≈ 1.
    Positions where ``mask`` is False are set to 0.

    Args:
        x: (B, T) float.
        mask: (B, T) bool.
    """
    mask = mask.bool()
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=True)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))
