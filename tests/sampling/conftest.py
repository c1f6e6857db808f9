"""Tiny Llama models for the sampler tests (fp32, seeded), sharing the default tokenizer's vocabulary."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM


def make_tiny_lm(tokenizer, seed: int = 0, layers: int = 2, kv_heads: int = 2) -> LlamaForCausalLM:
    """hidden 64, GQA (4 query heads on ``kv_heads`` key/value heads), the tokenizer's vocab, eval mode."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Larger weights than the default init give peakier, more varied next-token distributions.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.15)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model.eval()


@pytest.fixture
def make_lm():
    """The factory itself, for tests that need a fresh or differently seeded model."""
    return make_tiny_lm


@pytest.fixture
def tiny_lm(tokenizer) -> LlamaForCausalLM:
    return make_tiny_lm(tokenizer)


@pytest.fixture
def id_prompts() -> list[list[int]]:
    """Token-id prompts of different lengths (ids far from the special tokens)."""
    return [[100 + i for i in range(n)] for n in (3, 9, 5, 1, 12)]
