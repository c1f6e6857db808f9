"""The decode loop behind `alignkit.sampling.generate.generate`: one `Decoder` holds the KV cache and the outputs.

Steps 2 to 4 of `generate` (see its module docstring): rows of (prompt, sample) are decoded together in a
`SlabCache`; a prompt is prefilled once and its keys/values copied into its n sample rows; each decode step
feeds one token per row and picks the next one (`pick.pick_tokens`); finished rows are compacted away and
waiting prompts refilled into the free rows, so the batch stays full until the work runs out. Every token of
every (prompt, sample) draws its uniform from one seeded table, so batching decisions never change the samples
(up to float rounding in the model).

`generate` owns the settings, the model checks and the sampling mode; this module only runs the loop (and
the optional compiled decode step).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import torch
from torch import nn

from alignkit.sampling.kv_cache import SLAB_KEYWORD, SlabCache, prefill_mask
from alignkit.sampling.pick import pick_tokens

# Warnings go out under the public entry point's name, as they did before the loop had its own module.
logger = logging.getLogger("alignkit.sampling.generate")

CHUNK = 32  # cache columns added per growth: at most this many masked columns are read per step
COMPACT_FRACTION = 0.25  # rebuild without finished rows once this share of the batch is done
PREFILL_TOKENS = 8192  # prompts x padded length per prefill forward (bounds activation memory)


class DecodeSettings(Protocol):
    """The fields of `generate.SamplingSettings` the decoder reads (validated by `generate`)."""

    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    n: int
    seed: int | None
    return_logprobs: bool
    batch_size: int
    compile: bool


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model itself: the base model under a PEFT wrapper, else ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


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


class Decoder:
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
        s: DecodeSettings,
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
        num_layers = base_model(model).config.get_text_config(decoder=True).num_hidden_layers
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
            max_rows=0,
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
        self.stats["max_rows"] = max(self.stats["max_rows"], self.cache.rows)

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
