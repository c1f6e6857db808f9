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

from alignkit.errors import ModelError
from alignkit.models.cpu_attention import attention_configs
from alignkit.sampling import decode_attention as native
from alignkit.sampling.decode_attention import decode_attention, native_attention_usable

ATTENTION_NAME = "alignkit_slab"
SLAB_KEYWORD = "alignkit_slab"  # the forward keyword that brings the `SlabCache` to `slab_attention`
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

    Shared prompts (``prompt_lengths`` given): a prompt's keys and values are stored once, in a *prompt store*
    per layer (keys ``(N, H_kv, D, P)``, values ``(N, H_kv, P, D)``, one entry per prompt with rows in the
    cache, right-aligned at column ``P``), and the slab rows hold only the tokens sampled after it. Row ``b``
    reads prompt entry ``slot[b]``; ``bias`` is then ``(B, 1, 1, P + C)`` over [prompt columns | own columns].
    The n samples of a prompt then read its keys once from memory instead of n copies, and the cache holds
    one copy (`slab_attention` reads the store through the ``alignkit_slab`` keyword the model passes on).
    """

    def __init__(self, num_layers: int, prompt_lengths: list[int] | None = None):
        self._slab_layers = [_SlabLayer(self, i) for i in range(num_layers)]
        super().__init__(layers=list(self._slab_layers))
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.rows = 0  # B
        self.length = 0  # columns written (the next token goes to column `length`)
        self.capacity = 0  # C
        self.bias = torch.zeros(0, 1, 1, 0)  # (B, 1, 1, [P +] C) float32: 0 = attend, -inf = hidden
        # (rows, src) inside prefill(); rows become a slice when consecutive
        self._prefill: tuple[torch.Tensor | slice, torch.Tensor] | None = None
        self.column = torch.zeros(1, dtype=torch.long)  # (1,): ``length``, where the decode step writes
        # the prompt store (shared prompts only)
        self.shared = prompt_lengths is not None
        self._prompt_len = torch.tensor(prompt_lengths or [], dtype=torch.long)  # length of every prompt id
        self.prompt_keys: list[torch.Tensor | None] = [None] * num_layers  # (N, H_kv, D, P)
        self.prompt_values: list[torch.Tensor | None] = [None] * num_layers  # (N, H_kv, P, D)
        self.prompt_ids: list[int] = []  # the prompt id held by each entry of the store
        self.prompt_width = 0  # P
        self.slot = torch.zeros(0, dtype=torch.long)  # (B,) each row's entry in the store

    # ------------------------------------------------------------------------------------------- writes
    def write(self, layer: int, key_states: torch.Tensor, value_states: torch.Tensor):
        """Store one layer's new keys/values; return what that layer attends over."""
        if self._prefill is not None:
            rows, src = self._prefill
            if self.keys[layer] is None:  # first use: the dtype is what the model (or autocast) produces
                self._allocate(layer, key_states, value_states)
            if self.shared:  # rows: entries of the prompt store; src: each one's prompt in the group
                keys, values, end = self.prompt_keys[layer], self.prompt_values[layer], self.prompt_width
            else:
                keys, values, end = self.keys[layer], self.values[layer], self.length
            start = end - key_states.shape[2]
            keys[rows, :, :, start:end] = key_states.index_select(0, src).transpose(2, 3)
            values[rows, :, start:end] = value_states.index_select(0, src)
            return key_states, value_states
        # Column as a tensor, not a Python int: a compiled decode step then serves every column.
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(3, self.column, key_states[:, :, -1:].transpose(2, 3))
        values.index_copy_(2, self.column, value_states[:, :, -1:])
        return keys, values

    def _allocate(self, layer: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        heads, dim = key_states.shape[1], key_states.shape[3]
        self.keys[layer] = key_states.new_zeros((self.rows, heads, dim, self.capacity))
        self.values[layer] = value_states.new_zeros((self.rows, heads, self.capacity, value_states.shape[3]))
        if self.shared:
            entries, width = len(self.prompt_ids), self.prompt_width
            self.prompt_keys[layer] = key_states.new_zeros((entries, heads, dim, width))
            self.prompt_values[layer] = value_states.new_zeros((entries, heads, width, value_states.shape[3]))

    @contextlib.contextmanager
    def prefill(
        self, rows: torch.Tensor, src: torch.Tensor, prompts: list[int] | None = None
    ) -> Iterator[None]:
        """Within this context a forward of ``G`` prompts fills slab rows ``rows`` (R,) from prompts ``src`` (R,).

        Shared prompts: the ``G`` prompts (their ids: ``prompts``) fill their entries of the prompt store instead,
        once each, and the rows are left empty (they hold only sampled tokens).
        """
        if self.shared:
            if prompts is None:
                raise ValueError("a cache of shared prompts needs the prompt ids of a prefill")
            entry = {p: i for i, p in enumerate(self.prompt_ids)}
            rows = torch.tensor([entry[p] for p in prompts], dtype=torch.long, device=src.device)
            src = torch.arange(len(prompts), device=src.device)
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
        """Unmask column ``length`` (about to be written by the decode forward); return ``bias``."""
        self.bias[:, :, :, self.prompt_width + self.length] = 0.0
        self.column = torch.tensor([self.length], device=self.bias.device)
        return self.bias

    def advance(self) -> None:
        self.length += 1

    def prompt_store(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(keys (N, H_kv, D, P), values (N, H_kv, P, D), slot (B,)) of ``layer``, or None without shared prompts."""
        if not self.shared:
            return None
        return self.prompt_keys[layer], self.prompt_values[layer], self.slot

    # ----------------------------------------------------------------------------------------- reshape
    def reshape(
        self,
        keep: torch.Tensor,
        row_len: torch.Tensor,
        new_rows: int,
        length: int,
        capacity: int,
        row_prompt: torch.Tensor | None = None,
    ) -> None:
        """Rebuild the slab: rows ``keep`` (K,) of the old one first, then ``new_rows`` empty rows.

        ``row_len`` (K + new_rows,) is how many tokens each row of the new slab holds (kept rows: their tokens
        so far; new rows: their prompt, written later by :meth:`prefill`). Columns are right-aligned at
        ``length``; ``capacity`` >= ``length`` leaves room for the next decode steps. One copy of the kept
        rows' live columns: this is where finished rows leave (compaction) and new rows join (refill).
        ``keep`` and ``row_len`` are on the device of the keys and values; the mask is built there too.

        Shared prompts: ``row_prompt`` (K + new_rows,) is each row's prompt id. The prompt store keeps the entries
        of prompts that still have rows and gains one (empty, for :meth:`prefill`) per new prompt; a row's own
        columns are its tokens after the prompt, and ``length`` / ``capacity`` shrink by the longest prompt
        (the slab holds at least `native.LANES` columns, what the native kernel needs).
        """
        if capacity < length:
            raise ValueError(f"capacity {capacity} < length {length}")
        kept = int(keep.numel())
        if self.shared:
            if row_prompt is None:
                raise ValueError("a cache of shared prompts needs each row's prompt id")
            prompt_len = self._prompt_len.to(row_len.device)[row_prompt]
            self._reshape_prompts(row_prompt)
            row_len = row_len - prompt_len
            room = capacity - length
            length = int(row_len.max()) if row_len.numel() else 0
            capacity = max(length + room, native.LANES)
        span = min(int(row_len[:kept].max()), self.length) if kept else 0

        def copy_kept(old: torch.Tensor, new: torch.Tensor, column_dim: int) -> None:
            if span:
                new.narrow(0, 0, kept).narrow(column_dim, length - span, span).copy_(
                    old[keep].narrow(column_dim, self.length - span, span)
                )

        _rebuild(self.keys, self.values, kept + new_rows, capacity, copy_kept)
        self.rows, self.length, self.capacity = kept + new_rows, length, capacity
        columns = torch.arange(capacity, device=row_len.device)
        visible = (columns >= length - row_len[:, None]) & (columns < length)
        if self.shared:
            prompt_columns = torch.arange(self.prompt_width, device=row_len.device)
            in_prompt = prompt_columns >= self.prompt_width - prompt_len[:, None]
            visible = torch.cat([in_prompt, visible], dim=1)
        self.bias = torch.zeros(self.rows, 1, 1, visible.shape[1], device=row_len.device).masked_fill_(
            ~visible[:, None, None, :], float("-inf")
        )

    def _reshape_prompts(self, row_prompt: torch.Tensor) -> None:
        """New prompt store for rows of prompts ``row_prompt`` (R,): kept entries copied, new ones zero."""
        ids = list(dict.fromkeys(row_prompt.tolist()))  # each prompt once, in row order
        entry = {p: i for i, p in enumerate(ids)}
        old_entry = {p: i for i, p in enumerate(self.prompt_ids)}
        longest = int(self._prompt_len[ids].max()) if ids else 0
        width = -(-longest // native.LANES) * native.LANES  # a multiple of the kernel's block
        kept = [(entry[p], old_entry[p]) for p in ids if p in old_entry]
        span = min(
            max((int(self._prompt_len[p]) for p in ids if p in old_entry), default=0), self.prompt_width
        )
        to = torch.tensor([k[0] for k in kept], dtype=torch.long)
        source = torch.tensor([k[1] for k in kept], dtype=torch.long)

        def copy_kept(old: torch.Tensor, new: torch.Tensor, column_dim: int) -> None:
            if kept and span:
                piece = old.index_select(0, source.to(old.device))
                piece = piece.narrow(column_dim, self.prompt_width - span, span)
                new.narrow(column_dim, width - span, span).index_copy_(0, to.to(old.device), piece)

        _rebuild(self.prompt_keys, self.prompt_values, len(ids), width, copy_kept)
        self.prompt_ids, self.prompt_width = ids, width
        self.slot = torch.tensor(
            [entry[p] for p in row_prompt.tolist()], dtype=torch.long, device=row_prompt.device
        )

    def nbytes(self) -> int:
        tensors = self.keys + self.values + self.prompt_keys + self.prompt_values
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _rebuild(keys: list, values: list, rows: int, columns: int, copy_kept) -> None:
    """Replace each layer's keys (., H, D, C) and values (., H, C, D) by zeros of ``rows`` rows and ``columns``
    columns, after ``copy_kept(old, new, column_dim)`` has moved what stays. Zeros, not empty: masked columns
    are multiplied by 0 in attention, and 0 * NaN garbage = NaN."""
    for store, column_dim in ((keys, 3), (values, 2)):
        for layer, old in enumerate(store):
            if old is None:
                continue
            shape = list(old.shape)
            shape[0], shape[column_dim] = rows, columns
            new = old.new_zeros(shape)
            copy_kept(old, new, column_dim)
            store[layer] = new


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
    ``value`` its values (B, H_kv, C, D). With shared prompts the `SlabCache` comes as keyword
    ``alignkit_slab``, its prompt store holds the columns in front of each row's own, and ``bias`` is
    (B, 1, 1, P + C). On a CPU in bf16 the native kernel (`decode_attention`) does it in one pass, fp32
    inside, reading each prompt from the store. Otherwise two batched matmuls per layer with the GQA query
    heads of one KV head packed together, so K and V are read once and never repeated: scores (B*H_kv,
    H_q/H_kv, C) in the model dtype, softmax in fp32 (like transformers' eager attention); ~3x faster than
    SDPA for Q = 1 on a CPU.
    Prefill (a boolean mask (G, 1, P, P); key/value (G, H_kv, P, D)): attention over the group's own keys, by
    the same two matmuls while the scores stay small (``PREFILL_MATMUL_SCORES``), else by
    ``scaled_dot_product_attention`` (which never holds all the scores).
    """
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    batch, q_heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    group = q_heads // kv_heads
    if attention_mask is not None and attention_mask.dtype != torch.bool and q_len == 1:
        slab = kwargs.get(SLAB_KEYWORD)
        store = slab.prompt_store(module.layer_idx) if slab is not None else None
        prompt_width = store[0].shape[3] if store is not None else 0
        if attention_mask.shape[-1] != prompt_width + key.shape[3]:
            raise ModelError(
                f"{type(module).__name__} did not pass the sampler's keyword arguments on to its attention, "
                "which a cache of shared prompts needs; sample with share_prompts=False (alignkit sample "
                "--no-share-prompts)"
            )
        if native_attention_usable(query, key, store[0] if store is not None else None):
            bias = attention_mask.reshape(batch, attention_mask.shape[-1])
            out = decode_attention(
                query.reshape(batch, q_heads, dim), key, value, bias, scale, *(store or ())
            )
            return out.view(batch, 1, q_heads, dim), None
        if store is not None:  # the rows' prompts gathered in front of their own columns (a copy per step)
            prompt_keys, prompt_values, slot = store
            key = torch.cat([prompt_keys.index_select(0, slot), key], dim=3)
            value = torch.cat([prompt_values.index_select(0, slot), value], dim=2)
        kv_len = key.shape[3]
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
