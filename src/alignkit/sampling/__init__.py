"""Sampling: one batched generator (KV cache, per-row stop, compaction and refill) for every caller.

``alignkit.sampling.generate.generate(model, tokenizer, prompts, SamplingSettings(n=4, temperature=0.7))``
returns a `GenerationBatch` (`alignkit.sampling.results`); ``batch.to_tensors()`` gives right-padded tensors
for PPO, and `alignkit.sampling.logprobs.response_token_logps` rescores responses with one full forward.

Import from the submodules: this package re-exports nothing, so that importing `alignkit.sampling.config`
(the CLI's options) does not import torch and transformers, and `alignkit --help` stays fast.
"""
