"""The sampler's memory budget: how many rows (prompt x sample) may be decoded at once.

The KV cache is what grows with the work in flight: a row holds, in every layer, a key and a value per
KV head for each of its tokens, and a row can reach its prompt plus ``max_new_tokens`` tokens. So the most a
row can take is

    layers x 2 x kv_heads x head_size x dtype bytes x (prompt + max_new_tokens)

(`kv_bytes_per_row`; 23,040 bytes per token for SmolLM2-135M in bf16, 35 MB for a row of 1,500 tokens).
`rows_in_budget` caps the rows in flight at ``budget // that`` (at least one, at most ``batch_size``), with
the longest prompt of the call standing for every row: the slab cache is rectangular (`kv_cache.SlabCache`),
its columns set by its longest row. The decoder then works through the rows in waves of at most that many
(refilling as rows finish), and the samples are the same as without the cap, because every (prompt, sample)
draws its randomness from its own row of one seeded table (`decoder.Decoder`).

The default budget (``memory_budget_gb=None``) is `DEFAULT_SHARE` of the memory available when sampling
starts: the free memory of the model's GPU (plus what torch's allocator caches unused), or the RAM the
kernel reports available (``MemAvailable``) for a model on a CPU. What else a step holds is small beside a
long cache and is not counted: the sampler's (rows x vocabulary) fp32 workspace, the prefill's activations
(bounded by ``decoder.PREFILL_TOKENS``), and one layer of the old cache while a rebuild copies it.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from alignkit.models.registry import head_size

DEFAULT_SHARE = 0.5  # of the memory available when sampling starts, for the KV cache


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Bytes one token of one row takes in the KV cache: layers x 2 (key, value) x kv_heads x head_size x
    dtype bytes. ``config``: the decoder's transformers config."""
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return int(config.num_hidden_layers) * 2 * int(kv_heads) * int(head_size(config)) * int(dtype_bytes)


def kv_bytes_per_row(config: Any, dtype_bytes: int, tokens: int) -> int:
    """Bytes one row of ``tokens`` tokens (its prompt + max_new_tokens) can take in the KV cache."""
    return kv_bytes_per_token(config, dtype_bytes) * int(tokens)


def rows_in_budget(budget_bytes: float | None, row_bytes: int, batch_size: int) -> int:
    """The most rows in flight: ``batch_size``, lowered so that rows x ``row_bytes`` fits ``budget_bytes``
    (never below 1: one row always runs). ``budget_bytes`` None or 0: no budget."""
    if not budget_bytes or row_bytes <= 0:
        return int(batch_size)
    return max(1, min(int(batch_size), int(budget_bytes // row_bytes)))


def available_bytes(device: torch.device) -> int | None:
    """Memory available now: on a CUDA device its free memory plus what torch's allocator holds unused (it
    hands that out first), else the RAM the kernel reports available (``MemAvailable``); None when it
    cannot be read."""
    if device.type == "cuda":
        try:
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(torch.cuda.mem_get_info(device)[0]) + max(0, int(cached))
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def budget_bytes(memory_budget_gb: float | None, device: torch.device) -> float | None:
    """The budget in bytes: ``memory_budget_gb`` x 1e9; None: `DEFAULT_SHARE` of `available_bytes` (None, i.e.
    no budget, when that cannot be read); 0: no budget."""
    if memory_budget_gb is not None:
        return float(memory_budget_gb) * 1e9 if memory_budget_gb > 0 else None
    available = available_bytes(device)
    return DEFAULT_SHARE * available if available is not None else None
