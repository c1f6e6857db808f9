"""The sampler's memory budget (issue 24): rows in flight capped by KV-cache bytes, the samples unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alignkit.errors import ConfigError
from alignkit.sampling import memory
from alignkit.sampling.config import SampleConfig
from alignkit.sampling.generate import SamplingSettings, generate

# The tiny test model (tests/sampling/conftest.py): 2 layers, 2 KV heads, head size 64 / 4 = 16, fp32.
TINY_TOKEN_BYTES = 2 * 2 * 2 * 16 * 4  # layers x (key, value) x kv_heads x head_size x 4 bytes = 512


def test_kv_estimate_against_a_hand_computation():
    """Guards the estimate's arithmetic: layers x 2 x kv_heads x head_size x dtype bytes x tokens per row."""
    smollm2 = SimpleNamespace(
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576, head_dim=None
    )
    assert memory.kv_bytes_per_token(smollm2, 2) == 30 * 2 * 3 * 64 * 2 == 23_040  # "23 KB" in bf16
    # IFEval-like: a 200-token prompt + 1280 new tokens, 128 rows in bf16 = 4.37 GB of cache
    assert memory.kv_bytes_per_row(smollm2, 2, 200 + 1280) == 34_099_200
    assert memory.rows_in_budget(2e9, 34_099_200, 128) == 58  # 2e9 // 34,099,200
    assert memory.rows_in_budget(1e12, 34_099_200, 128) == 128  # not binding: batch_size
    assert memory.rows_in_budget(1.0, 34_099_200, 128) == 1  # one row always runs
    assert memory.rows_in_budget(None, 34_099_200, 128) == 128  # no budget
    no_gqa = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, hidden_size=64)  # kv heads = heads
    assert memory.kv_bytes_per_row(no_gqa, 4, 10) == 2 * 2 * 4 * 16 * 4 * 10
    assert memory.budget_bytes(1.5, None) == 1.5e9 and memory.budget_bytes(0, None) is None


def _texts(batch) -> list[str]:
    return [g.text for g in batch]


@pytest.mark.parametrize("temperature, top_k", [(0.0, 0), (1.0, 20)])
def test_a_small_budget_runs_in_waves_with_the_same_samples(
    tiny_lm, tokenizer, id_prompts, temperature, top_k
):
    """Guards issue 24: a budget of 3 rows' cache decodes at most 3 rows at once (several waves), and the
    samples are those of the unbudgeted run (each (prompt, sample) has its own row of seeded uniforms).

    Sampled with top-k: over the tiny random model's nearly flat 49k-token distribution, the float rounding
    of a different batch shape alone moves a draw to the neighbouring token now and then (as it does for
    ``batch_size``, test_generate.py); the budget changes nothing else."""
    settings = SamplingSettings(
        n=2, max_new_tokens=20, temperature=temperature, top_k=top_k, seed=7, stop_token_ids=[]
    )
    row_bytes = TINY_TOKEN_BYTES * (max(len(p) for p in id_prompts) + 20)
    free = generate(tiny_lm, tokenizer, id_prompts, settings, memory_budget_gb=0)
    capped = generate(tiny_lm, tokenizer, id_prompts, settings, memory_budget_gb=3.5 * row_bytes / 1e9)
    assert free.stats["max_rows"] == len(id_prompts) * 2 == 10 and free.stats["memory_budget_bytes"] == 0
    assert capped.stats["rows_limit"] == 3 and capped.stats["max_rows"] == 3
    assert capped.stats["rebuilds"] >= 4  # 10 rows through 3 slots: several waves
    assert capped.stats["peak_kv_bytes"] <= 3.5 * row_bytes
    assert [g.response_ids for g in capped] == [g.response_ids for g in free]
    assert _texts(capped) == _texts(free)


def test_the_default_budget_is_half_the_available_memory(tiny_lm, tokenizer, id_prompts, monkeypatch):
    """Guards the default: None takes `DEFAULT_SHARE` of the memory available when sampling starts."""
    row_bytes = TINY_TOKEN_BYTES * (max(len(p) for p in id_prompts) + 8)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 8.5 * row_bytes)
    batch = generate(tiny_lm, tokenizer, id_prompts, n=2, max_new_tokens=8, seed=0)
    assert memory.DEFAULT_SHARE == 0.5
    assert batch.stats["memory_budget_bytes"] == 0.5 * 8.5 * row_bytes
    assert batch.stats["rows_limit"] == 4 and batch.stats["max_rows"] == 4


def test_the_sample_command_passes_the_budget_and_checks_it():
    """Guards the option: --memory-budget-gb reaches the generator; a negative budget is a ConfigError."""
    assert SampleConfig(memory_budget_gb=2.5).sampling_settings().memory_budget_gb == 2.5
    assert SampleConfig().sampling_settings().memory_budget_gb is None
    with pytest.raises(ConfigError, match="--memory-budget-gb"):
        SampleConfig(prompts="p.jsonl", memory_budget_gb=-1).validate()
    with pytest.raises(ConfigError, match="memory_budget_gb"):
        SamplingSettings(memory_budget_gb=float("nan")).validated()
