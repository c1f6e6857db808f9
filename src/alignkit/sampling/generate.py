"""Batched sampling with a KV cache: the one generator behind best-of-n, PPO rollouts, labelling, judge, eval.

How it works (one ``generate`` call):

1. Prompts become token ids (`prompts.encode_prompts`; too long → cut from the left and counted).
2. Work is (prompt, sample) rows. Up to ``batch_size`` rows are decoded together in a `SlabCache`, fewer when
   their KV cache would not fit ``memory_budget_gb`` (`alignkit.sampling.memory`). A prompt is
   prefilled *once* and its keys/values copied into its n sample rows (n-fold less prefill than expanding the
   input, which is what ``generate(num_return_sequences=n)`` does). Only the last position goes through the
   LM head (``logits_to_keep`` = that position), in prefill and in decode.
3. Each decode step feeds one token per row (per-row positions, so rows of different lengths share a step),
   picks the next token (`pick.pick_tokens`) and records it. A row stops at its first stop token or at
   ``max_new_tokens``.
4. Finished rows stop costing compute: when a quarter of the rows are done, or the cache needs more columns,
   the cache is rebuilt without them (compaction), and waiting prompts are prefilled into the free rows
   (refill), so the batch stays full until the work runs out.

Randomness: each (prompt i, sample j) draws its t-th token with the uniform ``U[i * n + j, t]`` of one table
filled from ``torch.Generator().manual_seed(seed)``, so with the same seed the same rows come out whatever
``batch_size`` is, and however rows were compacted or refilled (up to float rounding in the model itself).

This module holds the settings, the model checks, the sampling mode and the public `generate`; steps 2 to 4
(the cache, the decode loop, compaction and refill) are `alignkit.sampling.decoder.Decoder`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch
from torch import nn

from alignkit.errors import ConfigError, ModelError
from alignkit.models.packed_linear import packed_linears
from alignkit.sampling import decode_attention as native
from alignkit.sampling.decoder import Decoder, base_model
from alignkit.sampling.kv_cache import slab_attention_enabled
from alignkit.sampling.prompts import Prompt, encode_prompts
from alignkit.sampling.results import Generation, GenerationBatch


@dataclass
class SamplingSettings:
    """How to sample. Defaults: one sample per prompt at temperature 1, up to 128 new tokens."""

    max_new_tokens: int = 128
    """Most tokens generated per response, stop token included."""
    min_new_tokens: int = 0
    """Stop tokens are banned until a response has this many tokens (transformers' ``min_new_tokens``)."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: sample from the smallest set of tokens whose probability reaches top_p (1 = off)."""
    top_k: int = 0
    """Sample from the k most likely tokens only (0 = off)."""
    n: int = 1
    """Samples per prompt."""
    seed: int | None = None
    """Seed of the sampling randomness; None draws one from torch's global generator."""
    stop_token_ids: Sequence[int] | None = None
    """Tokens that end a response (kept in it). None: the tokenizer's EOS plus the generation config's EOS
    ids; an empty list never stops before max_new_tokens."""
    return_logprobs: bool = False
    """Also return log pi_T(token) per response token, fp32 (see `alignkit.sampling.logprobs`)."""
    batch_size: int = 128
    """Most sequences (prompt x sample rows) decoded at once. Larger is faster per token until memory runs
    out; the KV cache takes 2 x layers x kv_heads x head_dim x bytes per token per row (23 KB for SmolLM2
    in bf16). ``memory_budget_gb`` may lower it."""
    memory_budget_gb: float | None = None
    """Most GB (1e9 bytes) the KV cache may take: the rows in flight are capped so that rows x layers x 2 x
    kv_heads x head_size x dtype bytes x (longest prompt + max_new_tokens) fits (`sampling.memory`), and
    the work runs in more waves; the samples do not change. None: half the memory available when sampling
    starts (free GPU memory, or available RAM for a model on a CPU); 0: no budget (batch_size alone)."""
    max_prompt_tokens: int | None = None
    """Prompts longer than this lose tokens from the left (counted in the result). None: the model's
    context length minus max_new_tokens."""
    dtype: str | torch.dtype | None = None
    """Compute dtype. None: the weights' own dtype (fastest: load the model in bf16 on a bf16 CPU). A
    different dtype runs under torch.autocast, which converts the weights at every matmul."""
    share_prompts: bool | None = None
    """Store each prompt's keys and values once for its n samples instead of once per sample (the KV
    cache's prompt store, `kv_cache.SlabCache`): n-fold less prompt memory, and the decode attention reads a
    prompt once for all its rows. None: on where it pays, i.e. n > 1 with the native CPU attention kernel
    in bf16 (elsewhere the shared prompt is copied to the rows at every step)."""
    compile: bool = False
    """Compile the decode step with torch.compile (CPU only): 0.87x the eager step time, for a one-off
    ~23 s per process (SmolLM2-135M at batch 128 on 2 cores, docs/sample.md). Worth it from about two
    thousand decode steps. A compiler failure falls back to eager decoding with a warning."""

    def validated(self) -> SamplingSettings:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(int(self.max_new_tokens) >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        need(int(self.min_new_tokens) >= 0, f"min_new_tokens must be >= 0, got {self.min_new_tokens}")
        need(
            math.isfinite(self.temperature) and self.temperature >= 0,
            f"temperature must be >= 0, got {self.temperature}",
        )
        need(0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}")
        need(int(self.top_k) >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}")
        need(int(self.n) >= 1, f"n (samples per prompt) must be >= 1, got {self.n}")
        need(int(self.batch_size) >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(
            self.memory_budget_gb is None
            or (math.isfinite(self.memory_budget_gb) and self.memory_budget_gb >= 0),
            f"memory_budget_gb must be >= 0 (0 = no budget) or None, got {self.memory_budget_gb}",
        )
        need(
            self.max_prompt_tokens is None or int(self.max_prompt_tokens) >= 1,
            f"max_prompt_tokens must be >= 1 or None, got {self.max_prompt_tokens}",
        )
        return self


# ------------------------------------------------------------------------------------------------ helpers


def default_stop_ids(model: nn.Module, tokenizer) -> list[int]:
    """The tokenizer's EOS id plus the generation config's EOS id(s), deduplicated."""
    ids: list[int] = []
    candidates: list[Any] = [getattr(tokenizer, "eos_token_id", None)]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        candidates.append(generation_config.eos_token_id)
    for value in candidates:
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    return ids


def _check_model(model: nn.Module) -> str:
    """Raise `ModelError` if the sampler cannot drive this model; return the forward's cache keyword."""
    base = base_model(model)
    config = getattr(base, "config", None)
    if config is None or not getattr(base, "_supports_attention_backend", False):
        raise ModelError(
            f"{type(base).__name__} cannot be sampled by alignkit: it needs a transformers causal LM that "
            "supports pluggable attention (Llama, Qwen2, Mistral, Gemma, ...)"
        )
    from transformers.cache_utils import get_layer_types_and_kwargs

    layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    if any(kind != "full_attention" for kind in layer_types):
        raise ModelError(
            f"{type(base).__name__} uses {sorted(set(layer_types))} attention layers; alignkit's sampler "
            "supports full causal attention only"
        )
    parameters = inspect.signature(base.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _probe(model: nn.Module) -> None:
    """A two-token forward, which shows `packed_linears` the layers that share their input."""
    device = next(model.parameters()).device
    model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=device), use_cache=False)


@contextmanager
def _sampling_mode(model: nn.Module, dtype: torch.dtype | None, batch_size: int = 128):
    """Eval mode (no dropout), no autograd, LoRA adapters merged, our attention, packed bf16 weights on a
    CPU (when no autocast); every module's train flag and weight restored afterwards."""
    from alignkit.models.lora_merged import merged_for_inference  # peft, imported only when sampling

    flags = [(module, module.training) for module in model.modules()]
    device_type = next(model.parameters()).device.type
    model.eval()
    with ExitStack() as stack:
        stack.enter_context(merged_for_inference(model))  # LoRA layers as one linear each (before packing)
        stack.enter_context(torch.inference_mode())
        if dtype is None:  # before our attention: its probe forward runs the model's own
            stack.enter_context(packed_linears(model, rows=batch_size, probe=partial(_probe, model)))
        stack.enter_context(slab_attention_enabled(model))
        stack.enter_context(torch.autocast(device_type, dtype=dtype) if dtype is not None else nullcontext())
        try:
            yield
        finally:
            for module, training in flags:
                module.training = training


def _resolve_dtype(model: nn.Module, dtype: str | torch.dtype | None) -> torch.dtype | None:
    """The autocast dtype, or None to run in the weights' own dtype."""
    if dtype is None:
        return None
    from alignkit.models.device import resolve_dtype

    weights = next(model.parameters())
    wanted = resolve_dtype(dtype, weights.device)
    return None if wanted == weights.dtype else wanted


def _sharing_pays(model: nn.Module, s: SamplingSettings, compute_dtype: torch.dtype | None) -> bool:
    """Whether to store prompts once for their samples by default: n > 1 and the decode attention is the
    native kernel (a CPU, bf16, head size a multiple of its vector, a compiler), which reads the prompt store
    in place; the fallback would copy the prompts to the rows at every step."""
    weights = next(model.parameters())
    from alignkit.models.registry import head_size

    return (
        int(s.n) > 1
        and weights.device.type == "cpu"
        and (compute_dtype or weights.dtype) == torch.bfloat16
        and head_size(base_model(model).config.get_text_config(decoder=True)) % native.LANES == 0
        and native.load()
    )


def _rows_in_flight(
    model: nn.Module,
    config: Any,
    s: SamplingSettings,
    token_ids: list[list[int]],
    compute_dtype: torch.dtype | None,
) -> tuple[int, float | None]:
    """(rows decoded at once, the budget in bytes or None): ``batch_size``, capped so that the KV cache of
    that many rows of the longest prompt + ``max_new_tokens`` fits the memory budget (`sampling.memory`)."""
    from alignkit.sampling import memory

    weights = next(model.parameters())
    budget = memory.budget_bytes(s.memory_budget_gb, weights.device)
    longest = max((len(ids) for ids in token_ids), default=0)
    dtype_bytes = torch.empty((), dtype=compute_dtype or weights.dtype).element_size()
    row_bytes = memory.kv_bytes_per_row(config, dtype_bytes, longest + int(s.max_new_tokens))
    return memory.rows_in_budget(budget, row_bytes, int(s.batch_size)), budget


# ------------------------------------------------------------------------------------------ public API


def generate(
    model: nn.Module,
    tokenizer,
    prompts: Sequence[Prompt],
    settings: SamplingSettings | None = None,
    **overrides: Any,
) -> GenerationBatch:
    """Sample ``settings.n`` responses for each prompt; return them prompt-major in a `GenerationBatch`.

    model: a transformers causal LM (or a PEFT model around one; the active adapter is used). tokenizer: its
    tokenizer (chat template, EOS, pad). prompts: conversations, strings (one user turn) or token-id lists
    (see `alignkit.sampling.prompts`). ``overrides`` replace fields of ``settings``
    (``generate(m, t, p, n=4, temperature=0.7)``).

    ``batch.stats``: ``prefill_s``, ``decode_s``, ``total_s``, ``new_tokens`` (real response tokens),
    ``tokens_per_s``, ``steps`` (decode forwards), ``row_steps`` (rows x steps, i.e. padding included),
    ``rebuilds``, ``prefill_tokens``, ``peak_kv_bytes``, ``shared_prompts`` (whether the cache stored each prompt once),
    ``memory_budget_bytes`` (0: none), ``rows_limit`` (the most rows in flight: ``batch_size`` capped by the
    budget), ``max_rows`` (the most rows that were in flight).
    """
    s = replace(settings or SamplingSettings(), **overrides).validated()
    cache_kw = _check_model(model)
    base_config = base_model(model).config.get_text_config(decoder=True)
    limit = s.max_prompt_tokens
    context = getattr(base_config, "max_position_embeddings", None)
    if limit is None and context:
        limit = max(1, int(context) - int(s.max_new_tokens))
    token_ids, cut = encode_prompts(tokenizer, list(prompts), limit)
    stop_ids = list(s.stop_token_ids) if s.stop_token_ids is not None else default_stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop_ids[0] if stop_ids else 0)
    start = time.perf_counter()
    compute_dtype = _resolve_dtype(model, s.dtype)
    share = s.share_prompts if s.share_prompts is not None else _sharing_pays(model, s, compute_dtype)
    rows, budget = _rows_in_flight(model, base_config, s, token_ids, compute_dtype)
    decoder = Decoder(model, token_ids, replace(s, batch_size=rows), stop_ids, cache_kw, share)
    decoder.stats.update(memory_budget_bytes=budget or 0, rows_limit=rows)
    if token_ids:
        with _sampling_mode(model, compute_dtype, rows):
            decoder.run()
    total_s = time.perf_counter() - start

    # One copy of the outputs to the CPU (no-ops on a CPU model), then plain Python lists.
    tokens, finished = decoder.tokens.cpu(), decoder.finished.cpu()
    all_logps = decoder.logps.cpu() if decoder.logps is not None else None
    lengths = decoder.lengths.tolist()
    responses = [tokens[i, : lengths[i]].tolist() for i in range(len(lengths) - 1)]
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True) if responses else []
    generations = []
    for i, response in enumerate(responses):
        prompt = i // s.n
        logps = all_logps[i, : lengths[i]].tolist() if all_logps is not None else None
        generations.append(
            Generation(
                prompt_index=prompt,
                sample_index=i % s.n,
                prompt_ids=token_ids[prompt],
                response_ids=response,
                text=texts[i],
                finished=bool(finished[i]),
                token_logps=logps,
                prompt_truncated=cut[prompt],
            )
        )
    stats = dict(decoder.stats)
    new_tokens = int(sum(lengths[:-1]))
    stats.update(
        total_s=total_s, new_tokens=new_tokens, tokens_per_s=new_tokens / total_s if total_s > 0 else 0.0
    )
    return GenerationBatch(
        generations=generations,
        n=s.n,
        pad_token_id=pad,
        truncated_prompts=sum(1 for c in cut if c),
        stats=stats,
    )
