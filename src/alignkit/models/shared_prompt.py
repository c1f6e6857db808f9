"""Shared-prompt packing: several answers to one prompt in one row, the prompt forwarded once.

A group of K token sequences (prompt + answer_k) becomes one row: the leading tokens they all share
(the prompt), then each sequence's own tokens, one after another. Every token keeps the position id
it has in its own sequence, and a block attention mask lets a token see only the shared prefix and
the earlier tokens of its own sequence, so each sequence's hidden states equal those of a separate
forward pass (up to float rounding), at the cost of the prompt once instead of K times. This is prefix
sharing for preference tuning (Wang & Hegde 2024, arXiv:2410.20305), here for K >= 2 answers; reward
models (`rewards.comparisons`, `rewards.model`: training, evaluation, best-of-n scoring) and DPO
(`trainers.dpo_shared_prompt`) use it.

Layout of R packed rows of width T (right-padded):

    segments  (R, T)  0 on the shared prefix, k >= 1 on the k-th sequence's own tokens, -1 on padding
    positions (R, T)  position id of each token within its own sequence
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# attention implementations that read a custom 4D mask (the third: `models.cpu_attention`)
SHARED_PROMPT_ATTENTION = ("sdpa", "eager", "alignkit_cpu_bf16")


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Leading tokens all ``sequences`` share, leaving each at least one token of its own (its last)."""
    shortest = min(len(s) for s in sequences)
    first, common = sequences[0], 0
    while common < shortest - 1 and all(s[common] == first[common] for s in sequences[1:]):
        common += 1
    return common


@dataclass
class SharedPrompt:
    """Where each sequence sits in the packed rows (see the module docstring)."""

    segments: Tensor  # (R, T) long: 0 shared prefix, k >= 1 the row's k-th sequence, -1 padding
    position_ids: Tensor  # (R, T) long
    rows: Tensor  # (N,) packed row of each sequence, sequences in input order
    prefix: Tensor  # (N,) shared prefix length of its row
    own_start: Tensor  # (N,) column where its own tokens start
    last: Tensor  # (N,) column of its last token

    def to(self, device: torch.device | str) -> SharedPrompt:
        return SharedPrompt(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def columns(self, lengths: Tensor, width: int) -> Tensor:
        """(N, width) packed column of token t of each sequence; its last token's column for t >= its length."""
        t = torch.arange(width, device=self.prefix.device)[None, :]  # (1, width)
        cols = torch.where(t < self.prefix[:, None], t, self.own_start[:, None] + t - self.prefix[:, None])
        return torch.where(t < lengths[:, None], cols, self.last[:, None])

    def attention_mask(self) -> Tensor:
        """(R, 1, T, T) bool, True where query t may attend to key s.

        Causal within a row, and a key is visible only from its own segment or from the
        shared prefix (segment 0): sequences never see each other. Every query sees at
        least itself, so padding never gives an empty softmax row.
        """
        width = self.segments.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.segments.device).tril()
        query, key = self.segments[:, :, None], self.segments[:, None, :]
        visible = causal & (key >= 0) & ((key == 0) | (key == query))
        visible |= torch.eye(width, dtype=torch.bool, device=self.segments.device)
        return visible[:, None]


def pack(groups: Sequence[Sequence[Sequence[int]]], pad_id: int) -> tuple[Tensor, Tensor, SharedPrompt]:
    """One right-padded row per group of sequences: their common prefix once, then each one's own tokens.

    Returns input_ids (R, T), attention_mask (R, T) (1 on real tokens) and the layout.
    """
    ids_rows, seg_rows, pos_rows = [], [], []
    rows, prefixes, starts, lasts = [], [], [], []
    for r, group in enumerate(groups):
        prefix = common_prefix(group)
        ids, seg, pos = list(group[0][:prefix]), [0] * prefix, list(range(prefix))
        for k, sequence in enumerate(group, start=1):
            starts.append(len(ids))
            ids += sequence[prefix:]
            seg += [k] * (len(sequence) - prefix)
            pos += range(prefix, len(sequence))
            rows.append(r)
            prefixes.append(prefix)
            lasts.append(len(ids) - 1)
        ids_rows.append(ids)
        seg_rows.append(seg)
        pos_rows.append(pos)
    width = max(len(ids) for ids in ids_rows)
    input_ids = torch.full((len(groups), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(groups), width), dtype=torch.long)
    segments = torch.full((len(groups), width), -1, dtype=torch.long)
    positions = torch.zeros((len(groups), width), dtype=torch.long)
    for r, (ids, seg, pos) in enumerate(zip(ids_rows, seg_rows, pos_rows, strict=True)):
        input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[r, : len(ids)] = 1
        segments[r, : len(seg)] = torch.tensor(seg, dtype=torch.long)
        positions[r, : len(pos)] = torch.tensor(pos, dtype=torch.long)
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    layout = SharedPrompt(
        segments, positions, as_long(rows), as_long(prefixes), as_long(starts), as_long(lasts)
    )
    return input_ids, attention_mask, layout


def supports_shared_prompt(model: nn.Module) -> bool:
    """Whether ``model``'s attention reads a custom 4D mask (SDPA or eager)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) in SHARED_PROMPT_ATTENTION


def mask_for(model: nn.Module, layout: SharedPrompt, dtype: torch.dtype) -> Tensor:
    """The block mask as ``model``'s attention wants it: additive ``dtype`` for eager, else bool."""
    visible = layout.attention_mask()  # (R, 1, T, T)
    if model.config._attn_implementation != "eager":
        return visible
    blocked = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    return blocked.masked_fill_(~visible, torch.finfo(dtype).min)
