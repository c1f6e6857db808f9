"""Per-token quantities from (B, T, V) logits: entropy and log-probabilities, in float32 chunks.

Notation: B, T, V batch size, tokens per row (padded), vocabulary size; z the logits,
τ the sampling temperature. Both functions process ``chunk_rows`` (b, t) rows at a
time so that a float32 copy of the full (B, T, V) logits is never materialised.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["entropy_from_logits", "logprobs_and_entropy", "logprobs_from_logits"]


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


def logprobs_and_entropy(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, with_entropy: bool = True, chunk_rows: int = 256
) -> tuple[Tensor, Tensor | None]:
    """:func:`logprobs_from_logits` and the entropy of softmax(logits / τ), from one float32 pass per chunk.

    With z = logits / τ and L = logsumexp(z): ``log p(y) = z[y] - L`` and ``H = L - Σ_v p_v z_v`` with
    p = exp(z - L), the same quantities as the two functions give separately (the entropy there is of the
    logits it is handed, so pass it logits / τ to compare), without a second float32 copy and log-softmax
    of the (N, V) logits. The entropy is computed without gradient (for logging); the log-probs keep it.

    Args:
        logits: (N, V), any float dtype.
        tokens: (N,) int64.
        temperature: τ > 0.
        with_entropy: also return the entropy.
        chunk_rows: rows per float32 chunk.

    Returns:
        (N,) float32 log-probabilities, and (N,) float32 entropies in nats (or None).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits.dim() != 2 or tokens.shape != logits.shape[:1]:
        raise ValueError(
            f"need logits (N, V) and tokens (N,), got {tuple(logits.shape)} and {tuple(tokens.shape)}"
        )
    logps, entropies = [], []
    for start in range(0, logits.shape[0], max(chunk_rows, 1)):
        z = logits[start : start + chunk_rows].float()
        if temperature != 1.0:
            z = z / temperature
        lse = torch.logsumexp(z, dim=-1)
        logps.append(z.gather(-1, tokens[start : start + chunk_rows, None]).squeeze(-1) - lse)
        if with_entropy:
            with torch.no_grad():
                zd, norm = z.detach(), lse.detach()
                p = torch.exp(zd - norm[:, None])
                entropies.append(norm - torch.where(p > 0, p * zd, torch.zeros_like(p)).sum(-1))
    empty = logits.new_zeros(0, dtype=torch.float32)
    logp = torch.cat(logps) if logps else empty
    return logp, (torch.cat(entropies) if entropies else empty) if with_entropy else None
