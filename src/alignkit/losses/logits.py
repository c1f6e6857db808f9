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
    Computed in float32, ``chunk_rows`` (b, t) rows at a time, by
    :func:`logprobs_and_entropy` (its written-out backward included).

    Args:
        logits: (B, T, V), any float dtype.
        tokens: (B, T) int64 token ids.
        temperature: τ > 0.

    Returns:
        (B, T) float32 log-probabilities (``_token_logps``).
    """
    if tokens.shape != logits.shape[:-1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} do not match logits {tuple(logits.shape)}")
    flat, _ = logprobs_and_entropy(
        logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), temperature, False, chunk_rows
    )
    return flat.view(tokens.shape)


def logprobs_and_entropy(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, with_entropy: bool = True, chunk_rows: int = 256
) -> tuple[Tensor, Tensor | None]:
    """:func:`logprobs_from_logits` and the entropy of softmax(logits / τ), from one float32 pass per chunk.

    With z = logits / τ, m = max_v z_v, e = exp(z - m), s = Σ_v e_v and p = e / s:
    ``log p(y) = (z[y] - m) - log s`` and ``H = log s - Σ_v p_v (z_v - m)``, the same quantities as the two
    functions give separately (the entropy there is of the logits it is handed, so pass it logits / τ to
    compare). The entropy is for logging: it carries no gradient.

    The backward pass is written out: d log p(y) / dz = onehot(y) - p, recomputed chunk by chunk from the
    (N, V) logits in their own dtype and the (N,) log-normaliser, so nothing of (N, V) size in float32 is
    kept between the passes (autograd through ``logsumexp`` would keep every chunk's float32 copy, twice
    the bf16 logits), and the exponentials serve the log-probs and the entropy at once.

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
    logp, entropy = _TokenLogProbs.apply(
        logits, tokens, float(temperature), bool(with_entropy), max(chunk_rows, 1)
    )
    return logp, entropy if with_entropy else None


def _scaled_chunk(logits: Tensor, start: int, rows: int, temperature: float) -> Tensor:
    """A fresh float32 (rows, V) copy of logits[start : start + rows] / τ (safe to modify in place)."""
    z = logits[start : start + rows]
    z = z.clone() if z.dtype == torch.float32 else z.float()  # never the caller's own memory
    return z.div_(temperature) if temperature != 1.0 else z


class _TokenLogProbs(torch.autograd.Function):
    """log p(y) with a hand-written backward, and the entropy (no gradient); see :func:`logprobs_and_entropy`."""

    @staticmethod
    def forward(ctx, logits: Tensor, tokens: Tensor, temperature: float, with_entropy: bool, chunk_rows: int):
        n = logits.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=logits.device)
        entropy = torch.zeros(n if with_entropy else 0, dtype=torch.float32, device=logits.device)
        log_norm = torch.empty(n, dtype=torch.float32, device=logits.device)  # log Σ exp(z): the backward's
        for start in range(0, n, chunk_rows):
            z = _scaled_chunk(logits, start, chunk_rows, temperature)  # (r, V)
            picked = tokens[start : start + len(z), None]
            top = z.amax(-1, keepdim=True)  # (r, 1); -inf only where every logit is -inf
            z.sub_(top)  # z - m
            e = torch.exp(z)
            total = e.sum(-1)  # (r,) s
            log_s = total.log()
            logp[start : start + len(z)] = z.gather(-1, picked).squeeze(-1) - log_s
            log_norm[start : start + len(z)] = top.squeeze(-1) + log_s
            if with_entropy:
                # Σ p (z - m) = Σ e (z - m) / s, a row dot product; a banned token (-inf) has e = 0, and 0 · -inf
                # is NaN, so those (rare) rows are redone without their -inf terms
                dot = torch.bmm(e.unsqueeze(1), z.unsqueeze(2)).view(-1)
                bad = ~torch.isfinite(dot)
                if bad.any():
                    dot[bad] = torch.where(e[bad] > 0, e[bad] * z[bad], torch.zeros((), device=z.device)).sum(
                        -1
                    )
                entropy[start : start + len(z)] = log_s - dot / total
        ctx.save_for_backward(logits, tokens, log_norm)
        ctx.temperature, ctx.chunk_rows = temperature, chunk_rows
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, grad_entropy: Tensor):  # noqa: ARG004 - the entropy has no gradient
        logits, tokens, log_norm = ctx.saved_tensors
        temperature, chunk_rows = ctx.temperature, ctx.chunk_rows
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], chunk_rows):
            z = _scaled_chunk(logits, start, chunk_rows, temperature)
            rows = slice(start, start + len(z))
            g = grad_logp[rows].float()
            p = z.sub_(log_norm[rows, None]).exp_()  # softmax(z), in place
            d = p.mul_(-g[:, None])  # -g p
            d.scatter_add_(-1, tokens[rows, None], g[:, None])  # + g onehot(y)
            if temperature != 1.0:
                d.div_(temperature)  # z = logits / τ
            grad[rows] = d
        return grad, None, None, None, None
