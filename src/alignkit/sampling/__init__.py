"""Sampling: one batched generator (KV cache, per-row stop, compaction and refill) for every caller.

``generate(model, tokenizer, prompts, SamplingSettings(n=4, temperature=0.7))`` returns a `GenerationBatch`;
``batch.to_tensors()`` gives right-padded tensors for PPO, and `response_token_logps` rescores responses with
one full forward.
"""

from alignkit.sampling.generate import SamplingSettings, default_stop_ids, generate
from alignkit.sampling.logprobs import response_token_logps
from alignkit.sampling.prompts import encode_prompts
from alignkit.sampling.results import Generation, GenerationBatch, PackedGenerations, pack

__all__ = [
    "Generation",
    "GenerationBatch",
    "PackedGenerations",
    "SamplingSettings",
    "default_stop_ids",
    "encode_prompts",
    "generate",
    "pack",
    "response_token_logps",
]
