"""Choose the next token of every row from its logits: greedy, temperature, top-k, top-p.

Randomness comes in as one uniform number per row (``uniforms`` (B,)), and a token is drawn by inverting the
row's cumulative distribution. The caller gives each (prompt, sample, step) its own fixed uniform, so a row's
token depends only on its own logits: results do not change with the batch size, the order of rows or
compaction. Inverse-CDF needs one random number per row where ``torch.multinomial`` or the Gumbel trick
cost ~85 ms per step at 128 x 49152 on a 2-core CPU (they draw a number per vocabulary entry).

Speed: the vocabulary-wide work happens in place in one fp32 ``workspace`` (B, V) that the caller keeps
between steps. Fresh 25 MB temporaries per step are returned to the OS by malloc and page-faulted back in
(12k faults, ~10 ms per step at batch 128): more than all the arithmetic here.

Log-probabilities (``want_logps``) are ``log softmax(logits / T)[token]`` in fp32 over the *full* vocabulary,
before any top-k / top-p / min-length masking: the policy's own probability of the token, which is what PPO's
ratio and KL need (Schulman et al. 2017, eq. 6-7; TRL computes the same from ``logits / temperature``). Greedy
(T = 0) reports them at T = 1.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def _block_size(vocab: int) -> int:
    for size in (256, 128, 64):
        if vocab % size == 0 and vocab > 4 * size:
            return size
    return 0


def _inverse_cdf(weights: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (B,) drawn from unnormalised non-negative ``weights`` (B, V), and the row totals (B,).

    The first i whose cumulative weight exceeds ``u * total``. Two levels (block sums, then a cumsum inside
    the chosen block) instead of a (B, V) cumsum: the same distribution at a fraction of the cost and with no
    (B, V) temporary. Zero-weight entries are never chosen (the cumulative sum must rise there).
    """
    batch, vocab = weights.shape
    block = _block_size(vocab)
    if block == 0:
        cdf = weights.cumsum(-1)
        total = cdf[:, -1]
        index = torch.searchsorted(cdf, (uniforms * total)[:, None], right=True)[:, 0]
        return _last_positive(weights, index.clamp_(max=vocab - 1)), total
    blocks = weights.view(batch, vocab // block, block)
    block_cdf = blocks.sum(-1).cumsum_(-1)  # (B, V / block)
    total = block_cdf[:, -1]
    target = (uniforms * total)[:, None]  # (B, 1)
    chosen = torch.searchsorted(block_cdf, target, right=True).clamp_(max=block_cdf.shape[1] - 1)  # (B, 1)
    before = block_cdf.gather(1, (chosen - 1).clamp_(min=0)) * (chosen > 0)
    inner = blocks[torch.arange(batch, device=weights.device), chosen[:, 0]]  # (B, block)
    offset = torch.searchsorted(inner.cumsum(-1), target - before, right=True)[:, 0].clamp_(max=block - 1)
    return chosen[:, 0] * block + _last_positive(inner, offset), total


def _last_positive(weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rounding can push ``u * total`` past the last rise of the cumsum; step back to a positive weight."""
    picked = weights.gather(1, index[:, None])[:, 0]
    if bool((picked > 0).all()):
        return index
    positions = torch.arange(weights.shape[1], device=weights.device).expand_as(weights)
    last = torch.where(weights > 0, positions, -1).amax(-1)
    return torch.where(picked > 0, index, last)


def _argmax(values: torch.Tensor) -> torch.Tensor:
    """First index of the row maximum (B,), like ``argmax``: block maxima first (fast in any dtype), then one block."""
    batch, vocab = values.shape
    block = _block_size(vocab)
    if block == 0:
        return values.float().argmax(-1)
    blocks = values.view(batch, vocab // block, block)
    best_block = blocks.amax(-1).float().argmax(-1)  # the first block holding the maximum
    inner = blocks[torch.arange(batch, device=values.device), best_block].float().argmax(-1)
    return best_block * block + inner


def pick_tokens(
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    banned_rows: torch.Tensor | None = None,
    banned_ids: torch.Tensor | None = None,
    want_logps: bool = False,
    workspace: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next token (B,) int64 and, when ``want_logps``, its log-probability (B,) fp32.

    logits (B, V), any float dtype, not modified. uniforms (B,) in [0, 1). ``banned_rows`` (B,) bool: rows
    whose ``banned_ids`` (S,) may not be chosen (stop tokens before ``min_new_tokens``). ``workspace``: an fp32
    tensor of at least (B, V) to work in (allocated when None). Processing order follows transformers: ban,
    temperature, top-k, then top-p on what top-k kept (renormalised); top-p keeps the smallest set of most
    likely tokens whose probability reaches ``top_p``. Every tensor is on the logits' device; so are the results.
    """
    batch, vocab = logits.shape
    ban = (
        banned_rows is not None
        and banned_ids is not None
        and banned_ids.numel() > 0
        and bool(banned_rows.any())
    )
    greedy = temperature <= 0
    if greedy and not ban and not want_logps:
        return _argmax(logits), None

    if workspace is None or workspace.shape[0] < batch or workspace.shape[1] != vocab:
        workspace = torch.empty(batch, vocab, dtype=torch.float32, device=logits.device)
    x = workspace[:batch]
    x.copy_(logits)
    if not greedy and temperature != 1.0:
        x.div_(temperature)
    banned_values = None
    if ban:
        rows = banned_rows.nonzero()  # (R, 1)
        if want_logps:  # the policy's normaliser includes the banned tokens
            banned_values = torch.full((batch, banned_ids.numel()), NEG_INF, device=x.device)
            banned_values[rows[:, 0]] = x[rows, banned_ids[None, :]]
        x[rows, banned_ids[None, :]] = NEG_INF

    token_logits = None  # (B,) scaled logit of the chosen token, when known before x is overwritten
    if greedy:
        tokens = _argmax(x)
        token_logits = x.gather(1, tokens[:, None])[:, 0]
        shift = token_logits[:, None]
    elif top_k > 0:
        values, index = x.topk(min(top_k, vocab), dim=-1)  # sorted, descending
        probs = torch.softmax(values, dim=-1)  # renormalised over the top k (what transformers does)
        if top_p < 1.0:
            probs = _nucleus(probs, top_p)
        chosen = _inverse_cdf(probs, uniforms)[0]
        tokens = index.gather(1, chosen[:, None])[:, 0]
        token_logits = values.gather(1, chosen[:, None])[:, 0]
        shift = values[:, :1]
    else:
        return _sample_softmax(logits, x, uniforms, temperature, top_p, want_logps, banned_values)

    if not want_logps:
        return tokens, None
    # Weights exp(x - shift), in place: log-probs need their sum.
    total = x.sub_(shift).exp_().sum(-1)
    log_z = total.log() + shift[:, 0]
    if banned_values is not None:
        log_z = torch.logaddexp(log_z, torch.logsumexp(banned_values, dim=-1))
    return tokens, token_logits - log_z


def _sample_softmax(
    logits: torch.Tensor,
    x: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    top_p: float,
    want_logps: bool,
    banned_values: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample from softmax(x) over the whole vocabulary (no top-k); x (B, V) fp32 is overwritten.

    The probabilities come from one in-place softmax, a single fused kernel (half the time of separate max,
    subtract and exp passes at 128 x 49,152). The log-probability of the chosen token needs no normaliser
    of its own: log p(token) = log prob[token] over the allowed tokens, and the banned tokens' mass, when
    there is any, is added back through x[token] - log prob[token] = logsumexp of the allowed logits.
    """
    torch.softmax(x, dim=-1, out=x)
    if top_p < 1.0:
        total = x.sum(-1)
        tokens = _top_p(x, total, uniforms, top_p)
    else:
        tokens, total = _inverse_cdf(x, uniforms)
    if not want_logps:
        return tokens, None
    log_prob = x.gather(1, tokens[:, None])[:, 0].log_() - total.log()  # over the allowed tokens
    if banned_values is None:
        return tokens, log_prob
    token_logit = logits.gather(1, tokens[:, None])[:, 0].float()
    if temperature != 1.0:
        token_logit = token_logit / temperature
    log_z = torch.logaddexp(token_logit - log_prob, torch.logsumexp(banned_values, dim=-1))
    return tokens, token_logit - log_z


def _top_p(weights: torch.Tensor, total: torch.Tensor, uniforms: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus sampling from unnormalised weights (B, V) without sorting the whole vocabulary.

    Look at the 64 heaviest tokens first; rows whose nucleus is not inside them are redone with 1024, then
    with a full sort (~1 ms per row). Exact in every case.
    """
    batch, vocab = weights.shape
    tokens = torch.empty(batch, dtype=torch.long, device=weights.device)
    todo = torch.arange(batch, device=weights.device)
    for width in (64, 1024, vocab):
        rows = weights if todo.numel() == batch else weights.index_select(0, todo)
        if width >= vocab:
            values, index = rows.sort(dim=-1, descending=True)
        else:
            values, index = rows.topk(width, dim=-1)
        probs = values / total[todo, None]  # probabilities under the whole distribution
        covered = probs.sum(-1) >= top_p
        if width >= vocab:
            covered[:] = True
        if bool(covered.any()):
            sel = covered.nonzero()[:, 0]
            chosen = _inverse_cdf(_nucleus(probs[sel], top_p), uniforms[todo[sel]])[0]
            tokens[todo[sel]] = index[sel].gather(1, chosen[:, None])[:, 0]
        todo = todo[~covered]
        if todo.numel() == 0:
            break
    return tokens


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of descending ``probs`` (B, k): keep token j while the mass before it is < top_p."""
    before = probs.cumsum(-1) - probs
    keep = before < top_p
    keep[:, 0] = True
    return probs * keep
