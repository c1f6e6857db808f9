"""The native decode-attention kernel: same result as an fp32 reference, built once, used only where it can be."""

from __future__ import annotations

import logging

import pytest
import torch
from tests.factories import needs_compiler

from alignkit.sampling import decode_attention as native
from alignkit.sampling.kv_cache import slab_attention

pytestmark = needs_compiler


def _reference(query, keys_t, values, bias, scale):
    """fp32 softmax(scale q K^T + bias) V with grouped query heads; query (B, H_q, D) -> (B, H_q, D)."""
    batch, q_heads, dim = query.shape
    kv_heads = keys_t.shape[1]
    q = query.float().view(batch, kv_heads, q_heads // kv_heads, dim)
    scores = torch.einsum("bhgd,bhdc->bhgc", q, keys_t.float()) * scale + bias[:, None, None, :]
    out = torch.einsum("bhgc,bhcd->bhgd", torch.softmax(scores, dim=-1), values.float())
    return out.reshape(batch, q_heads, dim)


def _inputs(batch, kv_heads, group, dim, capacity, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, kv_heads * group, dim, generator=generator).bfloat16()
    keys_t = torch.randn(batch, kv_heads, dim, capacity, generator=generator).bfloat16()
    values = torch.randn(batch, kv_heads, capacity, dim, generator=generator).bfloat16()
    return query, keys_t, values


def _right_aligned_bias(lengths, end, capacity):
    """0 on columns [end - length, end) of each row, -inf elsewhere (the cache's layout)."""
    columns = torch.arange(capacity)
    visible = (columns >= end - torch.tensor(lengths)[:, None]) & (columns < end)
    return torch.zeros(len(lengths), capacity).masked_fill(~visible, float("-inf"))


@pytest.mark.parametrize(
    ("kv_heads", "group", "dim", "capacity"),
    [(3, 3, 64, 96), (2, 1, 64, 40), (2, 4, 128, 16), (1, 7, 32, 75), (2, 5, 16, 33)],
)
def test_kernel_matches_fp32_reference_and_is_closer_than_bf16_matmuls(
    kv_heads, group, dim, capacity, monkeypatch
):
    lengths = [capacity, 1, 17, 33, capacity - 5, 2][: 6 if capacity >= 33 else 4]
    lengths = [min(n, capacity - 2) for n in lengths]
    query, keys_t, values = _inputs(len(lengths), kv_heads, group, dim, capacity)
    bias = _right_aligned_bias(lengths, capacity - 2, capacity)
    out = native.decode_attention(query, keys_t, values, bias, 0.125)
    expected = _reference(query, keys_t, values, bias, 0.125)
    assert out.dtype == torch.bfloat16 and out.shape == query.shape
    error = (out.float() - expected).abs().max().item()
    assert error <= 2**-7 * expected.abs().max().item()  # one bf16 rounding of the output
    # the fallback (bf16 scores and probabilities) is no closer
    monkeypatch.setattr("alignkit.sampling.kv_cache.native_attention_usable", lambda *args: False)
    fallback, _ = slab_attention(
        None, query[:, :, None], keys_t, values, bias[:, None, None, :], scaling=0.125
    )
    assert error <= (fallback.reshape(query.shape).float() - expected).abs().max().item() + 1e-6


def test_kernel_reads_a_mask_with_holes_and_gives_zero_for_a_fully_hidden_row():
    query, keys_t, values = _inputs(3, 2, 3, 64, 48, seed=1)
    bias = torch.zeros(3, 48)
    bias[0, ::3] = float("-inf")  # holes inside the visible span are masked by the bias itself
    bias[1, :40] = float("-inf")
    bias[2] = float("-inf")
    out = native.decode_attention(query, keys_t, values, bias, 0.2)
    expected = _reference(query, keys_t, values, bias, 0.2)
    assert torch.allclose(out[:2].float(), expected[:2], atol=2e-2, rtol=1e-2)
    assert (out[2] == 0).all()


@pytest.mark.parametrize(
    ("group", "dim", "width", "own"), [(3, 64, 48, 16), (2, 32, 16, 40), (5, 16, 64, 17)]
)
def test_kernel_reads_a_shared_prompt_store_like_the_copied_rows(group, dim, width, own):
    kv_heads, batch = 2, 5
    query, keys_t, values = _inputs(batch, kv_heads, group, dim, own, seed=2)
    prompt_keys_t, prompt_values = (t[:3].clone() for t in _inputs(3, kv_heads, 1, dim, width, seed=3)[1:])
    slot = torch.tensor([2, 2, 0, 1, 0])
    prompt_len = torch.tensor([width, 1, width - 3])  # per entry: right-aligned prompts of these lengths
    own_len = [1, own, 5, own - 1, 2]
    prompt_bias = _right_aligned_bias(prompt_len[slot].tolist(), width, width)
    bias = torch.cat([prompt_bias, _right_aligned_bias(own_len, own, own)], dim=1)
    bias[4, width + own - 1] = float("-inf")  # a hole at the end of the own columns: the prompt store alone
    out = native.decode_attention(query, keys_t, values, bias, 0.125, prompt_keys_t, prompt_values, slot)
    copied_keys = torch.cat([prompt_keys_t[slot], keys_t], dim=3)
    copied_values = torch.cat([prompt_values[slot], values], dim=2)
    expected = _reference(query, copied_keys, copied_values, bias, 0.125)
    error = (out.float() - expected).abs().max().item()
    assert error <= 2**-7 * expected.abs().max().item()


def test_kernel_refuses_a_prompt_store_narrower_than_its_block():
    query, keys_t, values = _inputs(2, 1, 2, 16, 16)
    prompt_keys_t, prompt_values = keys_t[:, :, :, :8].contiguous(), values[:, :, :8].contiguous()
    with pytest.raises(RuntimeError, match="8 prompt columns"):
        native.decode_attention(
            query, keys_t, values, torch.zeros(2, 24), 0.1, prompt_keys_t, prompt_values, torch.tensor([0, 1])
        )
    assert not native.native_attention_usable(query[:, :, None], keys_t, prompt_keys_t)


def test_slab_attention_takes_the_kernel_for_cpu_bf16_decode_only(monkeypatch):
    calls = []
    real = native.decode_attention

    def spy(*args):
        calls.append(args[0].dtype)
        return real(*args)

    monkeypatch.setattr("alignkit.sampling.kv_cache.decode_attention", spy)
    query, keys_t, values = _inputs(2, 2, 3, 64, 32)
    bias = _right_aligned_bias([5, 30], 31, 32)[:, None, None, :]
    native_out, _ = slab_attention(None, query[:, :, None], keys_t, values, bias, scaling=0.125)
    assert calls == [torch.bfloat16]
    slab_attention(None, query[:, :, None].float(), keys_t.float(), values.float(), bias, scaling=0.125)
    assert len(calls) == 1  # fp32: the batched matmuls
    monkeypatch.setenv("ALIGNKIT_NATIVE_ATTENTION", "0")
    native._library.cache_clear()
    try:
        fallback, _ = slab_attention(None, query[:, :, None], keys_t, values, bias, scaling=0.125)
    finally:
        native._library.cache_clear()
    assert len(calls) == 1
    assert torch.allclose(native_out.float(), fallback.float(), atol=3e-2)


def test_kernel_is_built_once_into_the_cache_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))
    compiler = native._compiler()
    first = native._build(compiler)
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path / "kernels" and first.suffix == ".so"
    assert native._build(compiler) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files left


def test_a_build_failure_falls_back_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    native._library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=native.__name__):
            assert native._library() is None
        assert "unavailable" in caplog.text
        query, keys_t, values = _inputs(1, 1, 2, 16, 16)
        assert not native.native_attention_usable(query[:, :, None], keys_t)
    finally:
        native._library.cache_clear()
