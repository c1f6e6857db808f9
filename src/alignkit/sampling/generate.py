"""Batched sampling with a KV cache: the one generator behind best-of-n, PPO rollouts, labelling, judge, eval.

How it works (one ``generate`` call):

1. Prompts become token ids (`prompts.encode_prompts`; too long → cut from the left and counted).
2. Work is (prompt, sample) rows. Up to ``batch_size`` rows are decoded together in a `SlabCache`. A prompt is
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
"""

from __future__ import annotations

import inspect
import logging
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
from alignkit.sampling.kv_cache import SLAB_KEYWORD, SlabCache, prefill_mask, slab_attention_enabled
from alignkit.sampling.pick import pick_tokens
from alignkit.sampling.prompts import Prompt, encode_prompts
from alignkit.sampling.results import Generation, GenerationBatch

logger = logging.getLogger(__name__)

CHUNK = 32  # cache columns added per growth: at most this many masked columns are read per step
COMPACT_FRACTION = 0.25  # rebuild without finished rows once this share of the batch is done
PREFILL_TOKENS = 8192  # prompts x padded length per prefill forward (bounds activation memory)


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
    in bf16)."""
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
            self.max_prompt_tokens is None or int(self.max_prompt_tokens) >= 1,
            f"max_prompt_tokens must be >= 1 or None, got {self.max_prompt_tokens}",
        )
        return self


# ------------------------------------------------------------------------------------------------ helpers


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


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
    base = _base(model)
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
    """Eval mode (no dropout), no autograd, our attention, packed bf16 weights on a CPU (when no autocast);
    every module's train flag restored afterwards."""
    flags = [(module, module.training) for module in model.modules()]
    device_type = next(model.parameters()).device.type
    model.eval()
    with ExitStack() as stack:
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
        and head_size(_base(model).config.get_text_config(decoder=True)) % native.LANES == 0
        and native.load()
    )


def _call_model(model: nn.Module, inputs: dict[str, Any]):
    return model(**inputs)


_COMPILED: list[Any] = []  # the compiled decode step, made once per process


def _compiled_call():
    """`_call_model` under ``torch.compile`` (dynamic shapes: one graph for every batch and cache size).

    One compiled function for every model: dynamo guards on the model's structure, not its identity, so
    models of the same architecture share the graph and their weights stay inputs (a weight update between
    calls is seen).
    """
    if not _COMPILED:
        _COMPILED.append(torch.compile(_call_model, dynamic=True))
    return _COMPILED[0]


def _compile_reason(model: nn.Module) -> str | None:
    from alignkit.models.compile import compile_unavailable

    device = next(model.parameters()).device
    if device.type != "cpu":
        return f"the compiled decode step is only tested on CPUs, not {device.type}"
    return compile_unavailable(device)


# --------------------------------------------------------------------------------------------- the loop


class _Decoder:
    """State of one `generate` call: the rows in the cache and the outputs of every (prompt, sample).

    Per-row tensors, (B,): ``sample`` (output slot; ``trash`` once the row is done), ``made`` (tokens sampled
    so far), ``row_len`` (tokens in the cache), ``alive``; ``next_ids`` (B, 1) is each row's last sampled token,
    fed at the next step. Every tensor lives on the model's device (``self.device``); the caller copies the
    outputs (``tokens``, ``logps``, ``lengths``, ``finished``) to the CPU once, at the end.
    """

    def __init__(
        self,
        model: nn.Module,
        prompts: list[list[int]],
        s: SamplingSettings,
        stop_ids: list[int],
        cache_kw: str,
        share_prompts: bool = False,
    ):
        self.model, self.prompts, self.s, self.cache_kw = model, prompts, s, cache_kw
        self.device = device = next(model.parameters()).device
        self.n, self.steps_max = int(s.n), int(s.max_new_tokens)
        total = len(prompts) * self.n
        self.trash = total  # output slot for rows that are already done
        seed = s.seed if s.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        # uniforms[sample, t]: the randomness of token t of that sample, fixed before any batching decision
        # (drawn on the CPU, so a seed gives the same numbers on every device).
        uniforms = torch.rand(total + 1, self.steps_max, generator=torch.Generator().manual_seed(seed))
        self.uniforms = uniforms.to(device)
        self.tokens = torch.zeros(total + 1, self.steps_max, dtype=torch.long, device=device)
        self.logps = torch.zeros(total + 1, self.steps_max, device=device) if s.return_logprobs else None
        self.lengths = torch.zeros(total + 1, dtype=torch.long, device=device)
        self.finished = torch.zeros(total + 1, dtype=torch.bool, device=device)
        self.stop_ids = torch.tensor(stop_ids, dtype=torch.long, device=device)
        # Work queue: [prompt, first sample, count]; longest prompts first so that later, shorter ones fit
        # into the columns a running batch already has.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        self.pending = [[i, 0, self.n] for i in order]
        num_layers = _base(model).config.get_text_config(decoder=True).num_hidden_layers
        self.shared = share_prompts
        self.cache = SlabCache(num_layers, [len(p) for p in prompts] if share_prompts else None)
        self.sample = torch.zeros(0, dtype=torch.long, device=device)
        self.made = torch.zeros(0, dtype=torch.long, device=device)
        self.row_len = torch.zeros(0, dtype=torch.long, device=device)
        self.alive = torch.zeros(0, dtype=torch.bool, device=device)
        self.next_ids = torch.zeros(0, 1, dtype=torch.long, device=device)
        self.n_alive = 0
        self.work: torch.Tensor | None = None
        self.compiled = False
        if s.compile:
            reason = _compile_reason(model)
            if reason is not None:
                logger.warning("sampling: not compiling the decode step (%s); decoding eager", reason)
            self.compiled = reason is None
        self.stats = dict(
            prefill_s=0.0,
            decode_s=0.0,
            steps=0,
            rebuilds=0,
            prefill_tokens=0,
            row_steps=0,
            peak_kv_bytes=0,
            shared_prompts=share_prompts,
        )

    # -------------------------------------------------------------------------------------------- run
    def run(self) -> None:
        while True:
            rows = self.cache.rows
            if self.n_alive == 0 and not self.pending:
                return
            free = self.s.batch_size - self.n_alive
            if (
                self.n_alive == 0
                or self.cache.length >= self.cache.capacity
                or (self.pending and free >= max(1, self.s.batch_size // 4))
                or rows - self.n_alive >= max(1, int(rows * COMPACT_FRACTION))
            ):
                self._rebuild()
                continue
            self._step()

    def _forward(self, compiled: bool = False, **inputs) -> torch.Tensor:
        """Logits (B, V) of the last position. The position goes in as a tensor: ``logits_to_keep=1`` would
        slice the hidden states to a non-contiguous (B, 1, H), for which torch's bf16 ``linear`` copies the
        LM head once per row (0.5 s of a 0.9 s prefill of 16 prompts); an index gives a contiguous copy.
        ``compiled``: run the compiled step (decode only; a compiler failure switches to eager for good)."""
        inputs[self.cache_kw] = self.cache
        inputs["use_cache"] = True
        if self.shared:
            inputs[SLAB_KEYWORD] = self.cache  # for `slab_attention`: the prompt store
        inputs["logits_to_keep"] = torch.tensor([inputs["input_ids"].shape[1] - 1], device=self.device)
        if compiled:
            from torch._dynamo.exc import TorchDynamoException

            try:
                return _compiled_call()(self.model, inputs).logits[:, -1]
            except TorchDynamoException as error:
                # Nothing or the same column was written: the eager retry below redoes the step exactly.
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                logger.warning("sampling: compiling the decode step failed (%s); decoding eager", first)
                self.compiled = False
        return _call_model(self.model, inputs).logits[:, -1]

    def _step(self) -> None:
        """One decode step for every row in the cache."""
        start = time.perf_counter()
        bias = self.cache.open_column()
        logits = self._forward(
            self.compiled, input_ids=self.next_ids, position_ids=self.row_len[:, None], attention_mask=bias
        )
        self.cache.advance()
        self.row_len += 1
        self._accept(None, logits)
        self.stats["steps"] += 1
        self.stats["row_steps"] += self.cache.rows
        self.stats["decode_s"] += time.perf_counter() - start

    # ------------------------------------------------------------------------------------ bookkeeping
    def _accept(self, rows: torch.Tensor | None, logits: torch.Tensor) -> None:
        """Pick the next token of ``rows`` (all rows when None) from logits (R, V); record it; retire stops."""
        take = (lambda t: t) if rows is None else (lambda t: t[rows])
        sample, made = take(self.sample), take(self.made)
        banned = made < self.s.min_new_tokens if self.s.min_new_tokens > 0 else None
        tokens, logps = pick_tokens(
            logits,
            self.uniforms[sample, made],
            temperature=self.s.temperature,
            top_k=self.s.top_k,
            top_p=self.s.top_p,
            banned_rows=banned,
            banned_ids=self.stop_ids,
            want_logps=self.logps is not None,
            workspace=self._workspace(logits),
        )
        self.tokens[sample, made] = tokens
        if self.logps is not None:
            self.logps[sample, made] = logps
        made = made + 1
        stop = (
            torch.isin(tokens, self.stop_ids)
            if self.stop_ids.numel()
            else torch.zeros_like(tokens, dtype=torch.bool)
        )
        done = stop | (made >= self.steps_max)
        if rows is None:
            self.next_ids = tokens[:, None]
        else:
            self.next_ids[rows, 0] = tokens
        if bool(done.any()):
            where = done.nonzero()[:, 0]
            self.lengths[sample[where]] = made[where]
            self.finished[sample[where]] = stop[where]
            index = where if rows is None else rows[where]
            still = self.alive[index]
            self.n_alive -= int(still.sum())
            self.alive[index] = False
            self.sample[index] = self.trash
        # Rows that are done keep stepping (into the trash slot) until the next rebuild; clamp their count.
        made.clamp_(max=self.steps_max - 1)
        if rows is None:
            self.made = made
        else:
            self.made[rows] = made

    def _workspace(self, logits: torch.Tensor) -> torch.Tensor:
        """One fp32 (batch_size, V) buffer for the sampler, kept for the whole call (see `pick`)."""
        if self.work is None or self.work.shape[1] != logits.shape[1]:
            self.work = torch.empty(
                self.s.batch_size, logits.shape[1], dtype=torch.float32, device=self.device
            )
        return self.work

    def _rebuild(self) -> None:
        """New cache: the live rows (compacted), then rows for waiting prompts (prefilled), then spare columns."""
        self.stats["rebuilds"] += 1
        keep = self.alive.nonzero()[:, 0]
        room = self.s.batch_size - int(keep.numel())
        units: list[tuple[int, int, int]] = []  # (prompt, first sample, count)
        while self.pending and room > 0:
            prompt, first, count = self.pending[0]
            take = min(count, room)
            units.append((prompt, first, take))
            room -= take
            if take == count:
                self.pending.pop(0)
            else:
                self.pending[0] = [prompt, first + take, count - take]
        new_len = [len(self.prompts[p]) for p, _, c in units for _ in range(c)]
        new_sample = [p * self.n + f + j for p, f, c in units for j in range(c)]
        device = self.device
        row_len = torch.cat([self.row_len[keep], torch.tensor(new_len, dtype=torch.long, device=device)])
        made = torch.cat([self.made[keep], torch.zeros(len(new_len), dtype=torch.long, device=device)])
        length = int(row_len.max())
        # Columns each row may still write: a row that has sampled `made` tokens feeds at most T - made more
        # (new rows: T - 1, their first token comes from the prefill).
        remaining = int((self.steps_max - made.clamp(min=1)).max())
        capacity = length + max(1, min(CHUNK, remaining))
        row_prompt = None
        if self.shared:
            new_prompt = [p for p, _, c in units for _ in range(c)]
            row_prompt = torch.cat(
                [self.sample[keep] // self.n, torch.tensor(new_prompt, dtype=torch.long, device=device)]
            )
        self.cache.reshape(keep, row_len, len(new_len), length, capacity, row_prompt)
        self.sample = torch.cat(
            [self.sample[keep], torch.tensor(new_sample, dtype=torch.long, device=device)]
        )
        self.made, self.row_len = made, row_len
        self.alive = torch.ones(self.cache.rows, dtype=torch.bool, device=device)
        new_ids = torch.zeros(len(new_len), 1, dtype=torch.long, device=device)
        self.next_ids = torch.cat([self.next_ids[keep], new_ids])
        self.n_alive = self.cache.rows
        if units:
            self._prefill(units, first_row=int(keep.numel()))
        self.stats["peak_kv_bytes"] = max(self.stats["peak_kv_bytes"], self.cache.nbytes())

    def _prefill(self, units: list[tuple[int, int, int]], first_row: int) -> None:
        """Run the prompts of ``units`` through the model into their rows of the cache; pick first tokens."""
        start = time.perf_counter()
        row = first_row
        groups: list[list[tuple[int, int, int]]] = [[]]
        for unit in units:  # longest first, so a group's padded size is its first prompt's length
            group = groups[-1]
            width = len(self.prompts[group[0][0]]) if group else len(self.prompts[unit[0]])
            if group and (len(group) + 1) * width > PREFILL_TOKENS:
                groups.append([])
            groups[-1].append(unit)
        for group in groups:
            lengths = [len(self.prompts[p]) for p, _, _ in group]
            width = max(lengths)
            ids = torch.zeros(len(group), width, dtype=torch.long)
            mask = torch.zeros(len(group), width, dtype=torch.bool)
            for g, (p, _, _) in enumerate(group):
                ids[g, width - lengths[g] :] = torch.tensor(self.prompts[p], dtype=torch.long)
                mask[g, width - lengths[g] :] = True
            src = torch.tensor([g for g, (_, _, c) in enumerate(group) for _ in range(c)], dtype=torch.long)
            rows = torch.arange(row, row + src.numel(), device=self.device)
            # Built on the CPU row by row, moved once (no-ops on a CPU model).
            ids, mask, src = ids.to(self.device), mask.to(self.device), src.to(self.device)
            positions = (mask.long().cumsum(-1) - 1).clamp_(min=0)
            with self.cache.prefill(rows, src, [p for p, _, _ in group]):
                logits = self._forward(
                    input_ids=ids, position_ids=positions, attention_mask=prefill_mask(mask)
                )
            self._accept(rows, logits.index_select(0, src))
            row += src.numel()
            self.stats["prefill_tokens"] += int(mask.sum())
        self.stats["prefill_s"] += time.perf_counter() - start


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
    ``rebuilds``, ``prefill_tokens``, ``peak_kv_bytes``, ``shared_prompts`` (whether the cache stored each prompt once).
    """
    s = replace(settings or SamplingSettings(), **overrides).validated()
    cache_kw = _check_model(model)
    base_config = _base(model).config.get_text_config(decoder=True)
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
    decoder = _Decoder(model, token_ids, s, stop_ids, cache_kw, share)
    if token_ids:
        with _sampling_mode(model, compute_dtype, int(s.batch_size)):
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
