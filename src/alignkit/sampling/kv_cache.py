"""A preallocated KV cache for batched decoding, and the attention that reads it.

Layout, per layer: keys ``(B, H_kv, D, C)`` (transposed: one key is a column) and values ``(B, H_kv, C, D)``,
contiguous (B rows, C columns of capacity). Every row
is *right-aligned*: the next token of every row is written at column ``length``, so row ``i`` holds its tokens
in columns ``[length - row_len[i], length)`` and padding on the left. An additive mask ``bias`` ``(B, 1, 1, C)``
(0 = attend, -inf = hide) hides padding and the not-yet-written columns.

Why not ``DynamicCache``: it grows by ``torch.cat``, i.e. copies the whole cache at every step (42% of a
batch-128 decode step of SmolLM2-135M in our profile). Why attend over all C columns instead of slicing
``[:length]``: a slice has a batch stride != its size and CPU ``bmm`` then copies K and V first (3-4x slower
than contiguous). The capacity grows in chunks (:meth:`SlabCache.reshape`), so at most a chunk of masked
columns is read, and every reshape also drops finished rows (compaction) and appends new ones (refill).

Keys are stored transposed because the decode attention reads them as ``K^T``: the native kernel
(`decode_attention`) vectorises over 16 keys at a time, and the batched-matmul fallback multiplies by
``K^T`` directly (as fast as by a transposed view of ``K``).

The attention (:func:`slab_attention`) is registered with transformers' ``AttentionInterface`` and switched on
only inside :func:`slab_attention_enabled`, so the model's own modules (and any LoRA layers on them) still run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin

from alignkit.models.cpu_attention import attention_configs
from alignkit.sampling import decode_attention as native
from alignkit.sampling.decode_attention import decode_attention, native_attention_usable

ATTENTION_NAME = "alignkit_slab"
# prefill scores (G x H_q x P x P) up to this size go through matmuls, not SDPA
PREFILL_MATMUL_SCORES = 1 << 24


class _SlabLayer(CacheLayerMixin):
    """Adapter from transformers' per-layer cache protocol to one layer of a `SlabCache`."""

    is_compileable = False
    is_sliding = False

    def __init__(self, slab: SlabCache, layer_idx: int):
        super().__init__()
        self.slab = slab
        self.layer_idx = layer_idx
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass  # the slab allocates its tensors itself

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return self.slab.write(self.layer_idx, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.slab.capacity, 0

    def get_seq_length(self) -> int:
        return self.slab.length

    def get_max_length(self) -> int:
        return self.slab.capacity


class SlabCache(Cache):
    """KV cache of right-aligned rows: per layer, keys ``(B, H_kv, D, C)`` and values ``(B, H_kv, C, D)``.

    Two write modes:

    * decode (default): each layer's new ``(B, H_kv, 1, D)`` key/value goes to column ``length`` of every row;
      the layer attends over the whole slab with the mask ``bias``. Call :meth:`open_column` before the forward
      and :meth:`advance` after it.
    * prefill (inside :meth:`prefill`): a group of ``G`` left-padded prompts ``(G, H_kv, P, D)`` is copied into
      slab rows ``rows`` (row ``rows[j]`` gets prompt ``src[j]``, so one prompt can fill n sample rows) at
      columns ``[length - P, length)``; the layer attends over the group's own keys only.
    """

    def __init__(self, num_layers: int):
        self._slab_layers = [_SlabLayer(self, i) for i in range(num_layers)]
        super().__init__(layers=list(self._slab_layers))
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.rows = 0  # B
        self.length = 0  # columns written (the next token goes to column `length`)
        self.capacity = 0  # C
        self.bias = torch.zeros(0, 1, 1, 0)  # (B, 1, 1, C) float32: 0 = attend, -inf = hidden
        # (rows, src) inside prefill(); rows become a slice when consecutive
        self._prefill: tuple[torch.Tensor | slice, torch.Tensor] | None = None
        self.column = torch.zeros(1, dtype=torch.long)  # (1,): ``length``, where the decode step writes

    # ------------------------------------------------------------------------------------------- writes
    def write(self, layer: int, key_states: torch.Tensor, value_states: torch.Tensor):
        """Store one layer's new keys/values; return what that layer attends over."""
        if self._prefill is not None:
            rows, src = self._prefill
            if self.keys[layer] is None:  # first use: the dtype is what the model (or autocast) produces
                heads, dim = key_states.shape[1], key_states.shape[3]
                self.keys[layer] = key_states.new_zeros((self.rows, heads, dim, self.capacity))
                self.values[layer] = value_states.new_zeros(
                    (self.rows, heads, self.capacity, value_states.shape[3])
                )
            start = self.length - key_states.shape[2]
            self.keys[layer][rows, :, :, start : self.length] = key_states.index_select(0, src).transpose(
                2, 3
            )
            self.values[layer][rows, :, start : self.length] = value_states.index_select(0, src)
            return key_states, value_states
        # Column as a tensor, not a Python int: a compiled decode step then serves every column.
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(3, self.column, key_states[:, :, -1:].transpose(2, 3))
        values.index_copy_(2, self.column, value_states[:, :, -1:])
        return keys, values

    @contextlib.contextmanager
    def prefill(self, rows: torch.Tensor, src: torch.Tensor) -> Iterator[None]:
        """Within this context a forward of ``G`` prompts fills slab rows ``rows`` (R,) from prompts ``src`` (R,)."""
        if rows.numel() and rows.device.type == "cpu":
            first = int(rows[0])
            if torch.equal(rows, torch.arange(first, first + rows.numel(), device=rows.device)):
                rows = slice(first, first + rows.numel())
        self._prefill = (rows, src)
        try:
            yield
        finally:
            self._prefill = None

    def open_column(self) -> torch.Tensor:
        """Unmask column ``length`` (about to be written by the decode forward); return ``bias`` (B, 1, 1, C)."""
        self.bias[:, :, :, self.length] = 0.0
        self.column = torch.tensor([self.length], device=self.bias.device)
        return self.bias

    def advance(self) -> None:
        self.length += 1

    # ----------------------------------------------------------------------------------------- reshape
    def reshape(
        self, keep: torch.Tensor, row_len: torch.Tensor, new_rows: int, length: int, capacity: int
    ) -> None:
        """Rebuild the slab: rows ``keep`` (K,) of the old one first, then ``new_rows`` empty rows.

        ``row_len`` (K + new_rows,) is how many columns each row of the new slab holds (kept rows: their tokens
        so far; new rows: their prompt, written later by :meth:`prefill`). Columns are right-aligned at
        ``length``; ``capacity`` >= ``length`` leaves room for the next decode steps. One copy of the kept
        rows' live columns: this is where finished rows leave (compaction) and new rows join (refill).
        ``keep`` and ``row_len`` are on the device of the keys and values; the mask is built there too.
        """
        if capacity < length:
            raise ValueError(f"capacity {capacity} < length {length}")
        kept = int(keep.numel())
        span = min(int(row_len[:kept].max()), self.length) if kept else 0
        for layer in range(len(self.keys)):
            for store, column_dim in ((self.keys, 3), (self.values, 2)):
                old = store[layer]
                if old is None:
                    continue
                # Zeros, not empty: masked columns are multiplied by 0 in attention, and 0 * NaN garbage = NaN.
                shape = list(old.shape)
                shape[0], shape[column_dim] = kept + new_rows, capacity
                new = old.new_zeros(shape)
                if span:
                    new.narrow(0, 0, kept).narrow(column_dim, length - span, span).copy_(
                        old[keep].narrow(column_dim, self.length - span, span)
                    )
                store[layer] = new
        self.rows, self.length, self.capacity = kept + new_rows, length, capacity
        columns = torch.arange(capacity, device=row_len.device)
        visible = (columns >= length - row_len[:, None]) & (columns < length)
        self.bias = torch.zeros(self.rows, 1, 1, capacity, device=row_len.device).masked_fill_(
            ~visible[:, None, None, :], float("-inf")
        )

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


def prefill_mask(prompt_mask: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask (G, 1, P, P) for left-padded prompts; True = may attend.

    Causal over real tokens; a padding query sees only itself, so no softmax row is empty (an all-masked row
    gives NaN, and a NaN key/value would poison the rows that mask it).
    """
    length, device = prompt_mask.shape[1], prompt_mask.device
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril_()
    allowed = causal & prompt_mask[:, None, :]
    allowed |= torch.eye(length, dtype=torch.bool, device=device)
    return allowed[:, None]


def slab_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention for `SlabCache`. query (B, H_q, Q, D). Returns (B, Q, H_q, D).

    Decode (a float mask ``bias`` (B, 1, 1, C), Q = 1): ``key`` is the cache's transposed keys (B, H_kv, D, C),
    ``value`` its values (B, H_kv, C, D). On a CPU in bf16 the native kernel (`decode_attention`) does it
    in one pass, fp32 inside. Otherwise two batched matmuls per layer with the GQA query heads of one KV head
    packed together, so K and V are read once and never repeated: scores (B*H_kv, H_q/H_kv, C) in the model
    dtype, softmax in fp32 (like transformers' eager attention); ~3x faster than SDPA for Q = 1 on a CPU.
    Prefill (a boolean mask (G, 1, P, P); key/value (G, H_kv, P, D)): attention over the group's own keys, by
    the same two matmuls while the scores stay small (``PREFILL_MATMUL_SCORES``), else by
    ``scaled_dot_product_attention`` (which never holds all the scores).
    """
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    batch, q_heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    group = q_heads // kv_heads
    if attention_mask is not None and attention_mask.dtype != torch.bool and q_len == 1:
        kv_len = key.shape[3]
        if native_attention_usable(query, key):
            bias = attention_mask.reshape(batch, kv_len)
            out = decode_attention(query.reshape(batch, q_heads, dim), key, value, bias, scale)
            return out.view(batch, 1, q_heads, dim), None
        q = query.reshape(batch * kv_heads, group, dim)
        scores = torch.bmm(q, key.view(batch * kv_heads, dim, kv_len))
        scores = scores.view(batch, kv_heads, group, kv_len).float()
        scores.mul_(scale).add_(attention_mask)  # mask (B, 1, 1, C) broadcasts over heads
        probs = torch.softmax(scores, dim=-1).to(value.dtype)
        out = torch.bmm(
            probs.view(batch * kv_heads, group, kv_len), value.view(batch * kv_heads, kv_len, dim)
        )
        return out.view(batch, 1, q_heads, dim), None
    if query.numel() // dim * key.shape[2] <= PREFILL_MATMUL_SCORES:
        # Small prompts (the usual case): two matmuls with the GQA heads of a KV head stacked, as in decode;
        # CPU SDPA costs ~3x more here (~1 ms per layer for 16 prompts of ~44 tokens, most of it overhead).
        q = query.reshape(batch, kv_heads, group * q_len, dim)
        scores = torch.matmul(q, key.transpose(2, 3)).view(batch, kv_heads, group, q_len, -1).float()
        scores.mul_(scale).masked_fill_(~attention_mask[:, :, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(value.dtype).view(batch, kv_heads, group * q_len, -1)
        out = torch.matmul(probs, value).view(batch, q_heads, q_len, dim)
        return out.transpose(1, 2).contiguous(), None
    if group > 1:
        key = key.repeat_interleave(group, dim=1)
        value = value.repeat_interleave(group, dim=1)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scale)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def slab_attention_enabled(model: nn.Module) -> Iterator[None]:
    """Route the model's attention through :func:`slab_attention` for the duration; restore it afterwards.

    The switch is on the model's config objects, so every model sharing them (e.g. a PEFT wrapper and its
    base) is switched too; do not run other forwards of the same model from another thread meanwhile.
    """
    AttentionInterface.register(ATTENTION_NAME, slab_attention)
    native.load()  # before any decode step is compiled (see `decode_attention.load`)
    saved = [(config, config._attn_implementation) for config in attention_configs(model)]
    try:
        for config, _ in saved:
            config._attn_implementation = ATTENTION_NAME
        yield
    finally:
        for config, previous in saved:
            config._attn_implementation = previous
