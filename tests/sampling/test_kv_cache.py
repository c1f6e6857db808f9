"""The slab KV cache: reshape keeps live columns right-aligned, masks hide the rest; attention = SDPA."""
# Keys are stored transposed, (B, H, D, C); values (B, H, C, D).

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.sampling.kv_cache import SlabCache, prefill_mask, slab_attention


def _filled(rows: int, length: int, capacity: int) -> SlabCache:
    cache = SlabCache(num_layers=1)
    cache.reshape(torch.zeros(0, dtype=torch.long), torch.full((rows,), length), rows, length, capacity)
    values = torch.arange(rows * length, dtype=torch.float32).view(rows, 1, length, 1)
    with cache.prefill(torch.arange(rows), torch.arange(rows)):
        cache.write(0, values, values)
    return cache


def test_reshape_keeps_live_rows_right_aligned_and_adds_empty_rows():
    cache = _filled(rows=3, length=4, capacity=6)
    before = cache.keys[0].clone()
    # Keep rows 2 and 0, which hold 3 and 2 live tokens; add one new row of 5 tokens.
    row_len = torch.tensor([3, 2, 5])
    cache.reshape(torch.tensor([2, 0]), row_len, new_rows=1, length=5, capacity=8)
    keys, values = cache.keys[0], cache.values[0]
    assert keys.shape == (3, 1, 1, 8) and values.shape == (3, 1, 8, 1)
    assert torch.equal(keys[0, 0, 0, 2:5], before[2, 0, 0, 1:4])  # the last 3 columns, now ending at column 5
    assert torch.equal(keys[1, 0, 0, 2:5], before[0, 0, 0, 1:4])
    assert torch.equal(values[:, 0, :, 0], keys[:, 0, 0, :])  # written alike
    assert (keys[2] == 0).all() and (keys[..., 5:] == 0).all()
    visible = cache.bias[:, 0, 0] == 0
    assert visible.tolist() == [
        [False, False, True, True, True, False, False, False],
        [False, False, False, True, True, False, False, False],
        [True, True, True, True, True, False, False, False],
    ]
    cache.open_column()
    assert (cache.bias[:, 0, 0, 5] == 0).all()


def test_prefill_mask_is_causal_over_real_tokens_and_never_empty():
    mask = prefill_mask(torch.tensor([[False, True, True]]))[0, 0]
    assert mask.tolist() == [[True, False, False], [False, True, False], [False, True, True]]


def test_decode_attention_equals_sdpa_with_grouped_heads():
    torch.manual_seed(0)
    batch, kv_heads, group, length, dim = 3, 2, 3, 7, 8
    query = torch.randn(batch, kv_heads * group, 1, dim)
    key, value = torch.randn(batch, kv_heads, length, dim), torch.randn(batch, kv_heads, length, dim)
    visible = torch.rand(batch, length) > 0.3
    visible[:, -1] = True
    bias = torch.zeros(batch, 1, 1, length).masked_fill(~visible[:, None, None], float("-inf"))
    out, _ = slab_attention(None, query, key.transpose(2, 3).contiguous(), value, bias, scaling=0.3)
    expected = F.scaled_dot_product_attention(
        query,
        key.repeat_interleave(group, 1),
        value.repeat_interleave(group, 1),
        attn_mask=visible[:, None, None],
        scale=0.3,
    ).transpose(1, 2)
    assert out.shape == (batch, 1, kv_heads * group, dim)
    assert torch.allclose(out, expected, atol=1e-5)


def test_prefill_fills_scattered_rows_like_consecutive_ones():
    keys = torch.randn(2, 1, 3, 4)  # two prompts of 3 tokens, head size 4
    caches = []
    for rows in (torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1])):
        cache = SlabCache(num_layers=1)
        cache.reshape(torch.zeros(0, dtype=torch.long), torch.full((3,), 3), 3, 3, 4)
        with cache.prefill(rows, torch.tensor([0, 0, 1])):
            cache.write(0, keys, keys)
        caches.append(cache)
    consecutive, scattered = caches
    assert torch.equal(consecutive.keys[0][:, 0, :, :3], keys[[0, 0, 1], 0].transpose(1, 2))
    assert torch.equal(scattered.keys[0][[2, 0, 1]], consecutive.keys[0])
    assert torch.equal(scattered.values[0][[2, 0, 1]], consecutive.values[0])


def test_prefill_attention_by_matmuls_equals_sdpa(monkeypatch):
    torch.manual_seed(0)
    prompts, kv_heads, group, length, dim = 3, 2, 3, 6, 8
    query = torch.randn(prompts, kv_heads * group, length, dim)
    key, value = torch.randn(prompts, kv_heads, length, dim), torch.randn(prompts, kv_heads, length, dim)
    mask = prefill_mask(torch.arange(length)[None, :] >= torch.tensor([[0], [2], [5]]))
    small, _ = slab_attention(None, query, key, value, mask, scaling=0.3)
    monkeypatch.setattr("alignkit.sampling.kv_cache.PREFILL_MATMUL_SCORES", 0)
    large, _ = slab_attention(None, query, key, value, mask, scaling=0.3)
    assert small.shape == large.shape == (prompts, length, kv_heads * group, dim)
    assert torch.allclose(small, large, atol=1e-5)


def test_prompt_store_keeps_each_prompt_once_and_follows_the_rows():
    lengths = [3, 20, 5]  # prompt ids 0, 1, 2
    cache = SlabCache(num_layers=1, prompt_lengths=lengths)
    none = torch.zeros(0, dtype=torch.long)
    # Rows 0-1 sample prompt 1, row 2 prompt 0: two entries, 32 columns wide (20 rounded up to 16s).
    cache.reshape(
        none, torch.tensor([20, 20, 3]), 3, length=20, capacity=21, row_prompt=torch.tensor([1, 1, 0])
    )
    assert cache.prompt_ids == [1, 0] and cache.slot.tolist() == [0, 0, 1] and cache.prompt_width == 32
    assert cache.length == 0 and cache.capacity == 16  # rows hold no token yet; the kernel's minimum width
    prompt_keys = {p: torch.randn(1, 1, n, 4) for p, n in enumerate(lengths)}
    for p in (1, 0):
        with cache.prefill(torch.tensor([0]), torch.tensor([0]), prompts=[p]):
            cache.write(0, prompt_keys[p], prompt_keys[p])
    store_keys, store_values, slot = cache.prompt_store(0)
    assert store_keys.shape == (2, 1, 4, 32) and store_values.shape == (2, 1, 32, 4)
    assert torch.equal(store_keys[0, 0, :, 12:], prompt_keys[1][0, 0].T)
    assert torch.equal(store_values[1, 0, 29:], prompt_keys[0][0, 0]) and (store_values[1, 0, :29] == 0).all()
    # Two decode steps write the rows' own columns only.
    for step in range(2):
        bias = cache.open_column()
        new = torch.full((3, 1, 1, 4), float(step + 1))
        cache.write(0, new, new)
        cache.advance()
    assert bias.shape == (3, 1, 1, 32 + 16)
    visible = (bias[:, 0, 0] == 0).nonzero().tolist()
    assert visible == [
        [r, c] for r, first in ((0, 12), (1, 12), (2, 29)) for c in [*range(first, 32), 32, 33]
    ]
    # Row 2 (prompt 0) finishes; row 1 stays; prompt 2 joins with one row. Prompt 1 keeps its keys.
    cache.reshape(
        torch.tensor([1]), torch.tensor([22, 5]), 1, length=22, capacity=24, row_prompt=torch.tensor([1, 2])
    )
    assert cache.prompt_ids == [1, 2] and cache.slot.tolist() == [0, 1] and cache.prompt_width == 32
    keys, _, _ = cache.prompt_store(0)
    assert torch.equal(keys[0, 0, :, 12:], prompt_keys[1][0, 0].T) and (keys[1] == 0).all()
    assert cache.length == 2 and cache.capacity == 16  # own tokens: 22 - 20 and 5 - 5; room for 2 more
    assert cache.keys[0][0, 0, 0, :2].tolist() == [1.0, 2.0] and (cache.keys[0][1] == 0).all()
    visible = cache.bias[:, 0, 0] == 0
    assert visible[0].nonzero()[:, 0].tolist() == [*range(12, 32), 32, 33]
    assert visible[1].nonzero()[:, 0].tolist() == list(range(27, 32))


def test_decode_attention_over_a_prompt_store_equals_the_copied_rows():
    torch.manual_seed(0)
    kv_heads, group, dim, width, own = 2, 3, 8, 6, 4
    prompt_keys, prompt_values = torch.randn(2, kv_heads, dim, width), torch.randn(2, kv_heads, width, dim)
    keys, values = torch.randn(3, kv_heads, dim, own), torch.randn(3, kv_heads, own, dim)
    slot = torch.tensor([1, 0, 1])
    visible = torch.rand(3, width + own) > 0.3
    visible[:, -1] = True
    bias = torch.zeros(3, 1, 1, width + own).masked_fill(~visible[:, None, None], float("-inf"))
    query = torch.randn(3, kv_heads * group, 1, dim)

    class Store:
        def prompt_store(self, layer):
            assert layer == 5
            return prompt_keys, prompt_values, slot

    class Attention:
        layer_idx = 5

    out, _ = slab_attention(Attention(), query, keys, values, bias, scaling=0.3, alignkit_slab=Store())
    copied_keys = torch.cat([prompt_keys[slot], keys], dim=3)
    copied_values = torch.cat([prompt_values[slot], values], dim=2)
    expected, _ = slab_attention(None, query, copied_keys, copied_values, bias, scaling=0.3)
    assert torch.allclose(out, expected, atol=1e-6)
