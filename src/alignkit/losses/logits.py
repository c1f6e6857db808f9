"""Per-token quantities from (B, T, V) logits: entropy and log-probabilities, in float32 chunks.

Notation: B, T, V batch size, tokens per row (padded), vocabulary size; z the logits,
τ the sampling temperature. Both functions process ``chunk_rows`` (b, t) rows at a
time so that a float32 copy of the full (B, T, V) logits is never materialised.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["entropy_from_logits", "logprobs_from_logits"]


def _row_chunks(logits: Tensor, chunk_rows: int) -> list[Tensor]:
    """Split (B, T, V) into pieces of at most ``chunk_rows`` (b, t) rows, viewed as (rows, V)."""
    flat = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
    return list(flat.split(max(chunk_rows, 1), dim=0))


def entropy_from_logits(logits: Tensor, chunk_rows: int = 1024) -> Tensor:
    """Entropy of the softmax distribution at every position.

    ``H = -Σ_v p_v log p_v = logsumexp(z) - Σ_v p_v z_v`` with p = softmax(z),
    computed as ``-Σ p · log_softmax(z)`` in float32; a -inf logit (a banned
    token) contributes 0, not NaN.

    Memory: a float32 copy of (B, T, V) logits is large (B=8, T=512, V=49152 is
    805 MB), so rows are processed ``chunk_rows`` at a time and only the (B, T)
    result is kept. Under autograd each chunk's softmax is still saved for the
    backward pass; log the entropy under ``torch.no_grad`` unless it is a loss term.

    Args:
        logits: (B, T, V), any float dtype.

    Returns:
        (B, T) float32 entropy in nats.
    """
    out = []
    for rows in _row_chunks(logits, chunk_rows):
        logp = torch.log_softmax(rows.float(), dim=-1)
        p = logp.exp()
        plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
        out.append(-plogp.sum(-1))
    return torch.cat(out).reshape(logits.shape[:-1])


def logprobs_from_logits(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, chunk_rows: int = 1024
) -> Tensor:
    """Log-probability of ``tokens`` under softmax(logits / temperature).

    ``log p(y_t) = z_t[y_t] / τ - logsumexp(z_t / τ)``. Sampling at temperature τ
    means the policy *is* softmax(z / τ): divide by the same τ when computing the
    rollout, reference and training log-probabilities, or the ratio and the KL
    compare different distributions (Huang et al. 2024, the temperature detail).

    Alignment is the caller's: the logits at position t must be the ones that
    predicted ``tokens[:, t]`` (usually ``logits[:, :-1]`` with ``input_ids[:, 1:]``).
    Computed in float32, ``chunk_rows`` (b, t) rows at a time (see
    :func:`entropy_from_logits`), gathering one logit per row instead of
    materialising a full log-softmax.

    Args:
        logits: (B, T, V), any float dtype.
        tokens: (B, T) int64 token ids.
        temperature: τ > 0.

    Returns:
        (B, T) float32 log-probabilities (``_token_logps``).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} do not match logits {tuple(logits.shape)}")
    flat_tokens = tokens.reshape(-1, 1)
    out = []
    start = 0
    for rows in _row_chunks(logits, chunk_rows):
        z = rows.float() / temperature if temperature != 1.0 else rows.float()
        picked = z.gather(-1, flat_tokens[start : start + len(rows)]).squeeze(-1)
        out.append(picked - torch.logsumexp(z, dim=-1))
        start += len(rows)
    return torch.cat(out).reshape(tokens.shape)
