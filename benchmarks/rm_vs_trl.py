"""`alignkit rm` versus TRL 1.16's `RewardTrainer` on the embedded default model: tokens/s, peak RSS, MFU.

Same model (SmolLM2-135M-Instruct), data (``../shared/data/preference/hh-rlhf-harmless-dev.jsonl``,
only the pairs whose prompt + answer fit ``--max-length``, so neither tool cuts or drops any), LoRA
(rank 16, alpha 32, every linear layer of the decoder), batch (8 pairs), max length (512), learning
rate and number of steps. Two settings:

(a) defaults: each tool's own precision and memory settings. TRL 1.16 on a CPU: fp32 weights under
    bf16 autocast (``bf16`` defaults to True in TRL's configs) with gradient checkpointing on.
    alignkit: bf16 frozen base, fp32 LoRA and head under bf16 autocast, layers checkpointed only when a
    batch's activations exceed ``--activation-memory-gb`` (0.5 GB), decoder layers compiled
    (``--compile``; the compiling happens in the warm-up steps, whose seconds are reported, with a run
    of the same defaults without ``--compile`` beside it: ``compile_speedup``, ``mfu_no_compile``).
(b) same settings: TRL also gets bf16 weights (``model_init_kwargs={"dtype": "bfloat16"}``) and no
    gradient checkpointing; alignkit runs with no activation limit (``activation_memory_gb: 0``), so
    neither recomputes anything. alignkit keeps its two speed-ups TRL does not have: each pair's prompt
    forwarded once (``share_prompt``) and bf16 attention as batched matmuls (``cpu_attention``).
    ``throughput_ratio_same_plain`` is alignkit with both off and nothing compiled (the same
    transformers forward as TRL's) against the same TRL run.

Measured per step after ``--warmup`` steps (model loading and tokenising excluded): tokens/s = real
(non-pad) tokens of prompt + chosen and prompt + rejected / step wall time, for both tools: the same
work, the pairs trained on. alignkit forwards each pair's prompt once (``share_prompt``, on by default;
its scores and gradients equal separate passes, tested), so it computes fewer tokens than it is
credited with; ``forward_tokens_per_s`` reports the tokens it actually forwarded, and MFU counts only
the FLOPs of those (an honest utilisation figure, not inflated by the sharing). Peak RSS: ``ru_maxrss`` of each
run's own process. Each tool shuffles the pairs its own way (alignkit groups similar lengths into a
batch; TRL draws random batches and pads to the longest), so over few steps the batches differ.

MFU (model FLOPs utilisation, Chowdhery et al. 2022, PaLM, appendix B: model FLOPs only, recomputation
from checkpointing not counted) against the best bf16 matmul rate measured in this run. Model FLOPs per
real token of a sequence of length t, for LoRA training::

    4 N_frozen + 6 N_lora + 6 L d t

Kaplan et al. 2020 (sec. 2.1) count 2N per token forward and 4N backward, half of which is the weight
gradient; frozen weights get no weight gradient, so they cost 2N + 2N; LoRA weights get all 6N. The
attention scores and their backward add 12 L d t per token (PaLM, appendix B; nanoGPT's estimate_mfu),
halved for a causal mask: in general 12 L d per visible (query, key) pair, t^2 / 2 pairs for a causal
sequence of length t and P^2 / 2 + sum_k (A_k P + A_k^2 / 2) for a packed comparison (prompt P once,
answers A_k). N counts the decoder's matmul weights (no embedding lookup, no LM head).

Usage (time-boxed to ~10 minutes on 2 CPU cores; run alone):

    flock /tmp/alignkit-cpu.lock .venv/bin/python benchmarks/rm_vs_trl.py

The last line printed is one JSON object with throughput_ratio_default, throughput_ratio_same,
peak_rss_ratio (alignkit / TRL: > 1 faster, < 1 less memory) and mfu (alignkit's, default setting).

``--quality`` instead trains alignkit for ``--quality-steps`` on 80% of the harmless file (a seeded
`split_records`), then TRL (its defaults) for the same wall-clock (its schedule sized with
``--trl-step-seconds`` from the throughput run), and prints both accuracies on the other 20% with the same
evaluator (`alignkit.evaluation.reward_model`); ``--data helpful`` uses the helpful file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import machine, matmul_peak_flops, peak_rss_bytes, print_json_line, run_child  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "preference"
MODEL = "smollm2-135m-instruct"


# ------------------------------------------------------------------ data
def fitting_records(path: Path, max_length: int):
    """Preference records whose every prompt + answer fits ``max_length`` tokens (nothing cut or dropped)."""
    from alignkit.data.load import load_records
    from alignkit.models.registry import load_tokenizer
    from alignkit.rewards.comparisons import encode_answers

    records = load_records(str(path), kind="preference", skip_invalid=True).records
    tokenizer = load_tokenizer(MODEL, padding_side="right")
    items = [(r.prompt, a) for r in records for a in (r.chosen, r.rejected)]
    encoded = encode_answers(tokenizer, items, max_length)
    return [
        r
        for i, r in enumerate(records)
        if all(e is not None and e.prompt_cut == 0 for e in encoded[2 * i : 2 * i + 2])
    ]


def write_jsonl(records, path: Path) -> Path:
    path.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))
    return path


# ----------------------------------------------------------------- FLOPs
def flops_rates(lora_r: int) -> tuple[float, float]:
    """(FLOPs per forwarded token for the weights: 4 N_frozen + 6 N_lora, FLOPs per visible (query, key)
    pair for attention: 12 L d); see the module docstring."""
    from transformers import AutoConfig

    from alignkit.models.registry import resolve

    c = AutoConfig.from_pretrained(resolve(MODEL))
    h, inter, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    kv = c.num_key_value_heads * (h // c.num_attention_heads)
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]  # q k v o gate up down
    frozen = layers * sum(a * b for a, b in shapes)
    lora = layers * sum(lora_r * (a + b) for a, b in shapes)
    return 4 * frozen + 6 * lora, 12 * layers * h


def flops_of(token_lengths: list[int], lora_r: int) -> float:
    """Model FLOPs of training on causal sequences of these real lengths (t tokens, t^2 / 2 visible pairs)."""
    per_token, per_pair = flops_rates(lora_r)
    return sum(t * per_token + t * t / 2 * per_pair for t in token_lengths)


def flops_of_packed(rows: list[tuple[int, list[int]]], lora_r: int) -> float:
    """Model FLOPs of packed comparisons (prompt P once, answers A_k after it, each seeing P and itself):
    P + sum A_k tokens and P^2 / 2 + sum_k (A_k P + A_k^2 / 2) visible pairs."""
    per_token, per_pair = flops_rates(lora_r)
    total = 0.0
    for prompt, answers in rows:
        tokens = prompt + sum(answers)
        pairs = prompt * prompt / 2 + sum(a * prompt + a * a / 2 for a in answers)
        total += tokens * per_token + pairs * per_pair
    return total


# --------------------------------------------------------------- workers
def worker_alignkit(args) -> dict:
    from alignkit import console
    from alignkit.config import build_config
    from alignkit.runs import read_metrics
    from alignkit.trainers.rm import run_rm
    from alignkit.trainers.rm_config import RMConfig

    console.set_quiet(True)
    out = Path(args.out)
    overrides = {
        "model": MODEL,
        "data": args.data,
        "output": str(out / "run"),
        "max_steps": args.warmup + args.steps,
        "batch_size": args.batch,
        "max_length": args.max_length,
        "lora_r": args.rank,
        "lora_alpha": 2 * args.rank,
        "lr": 1e-4,
        "save_every": 0,
        "seed": 0,
        "dtype": args.dtype,
    }
    overrides.update(json.loads(args.rm_options or "{}"))
    if args.eval_data:  # quality run: train --steps, evaluate with the same evaluator as TRL's model
        overrides.update(eval_data=args.eval_data, max_steps=args.steps)
    cfg = build_config(RMConfig, None, overrides)
    summary = run_rm(cfg)
    if args.eval_data:
        return {
            "tool": "alignkit",
            "steps": summary["steps"],
            "train_seconds": summary["train_seconds"],
            "accuracy": summary["eval"]["accuracy"],
            "pairs": summary["eval"]["pairs"],
            "peak_rss": peak_rss_bytes(),
        }
    rows = [r for r in read_metrics(out / "run" / "metrics.jsonl") if "perf/step_seconds" in r]
    warmup_seconds = sum(r["perf/step_seconds"] for r in rows[: args.warmup])  # compiling happens here
    rows = rows[args.warmup :]
    seconds = sum(r["perf/step_seconds"] for r in rows)
    tokens = sum(r["perf/tokens_per_s"] * r["perf/step_seconds"] for r in rows)
    forwarded = sum(r["perf/forward_tokens_per_s"] * r["perf/step_seconds"] for r in rows)
    return {
        "tool": "alignkit",
        "steps": len(rows),
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "forward_tokens_per_s": forwarded / seconds,
        "flops": _alignkit_flops(out / "run", rows, args.rank),
        "peak_rss": peak_rss_bytes(),
        "padding_efficiency": sum(r["perf/padding_efficiency"] for r in rows) / len(rows),
        "checkpointed_layers": [r.get("perf/checkpointed_layers") for r in rows],
        "step_seconds": [round(r["perf/step_seconds"], 2) for r in rows],
        "warmup_seconds": warmup_seconds,
    }


def _alignkit_flops(run_dir: Path, rows: list[dict], lora_r: int) -> float:
    """Model FLOPs of the timed steps, replaying the run's own batch order (and its prompt sharing)."""
    from alignkit.config import build_config
    from alignkit.data.load import load_records
    from alignkit.models.registry import load_tokenizer
    from alignkit.rewards.comparisons import prepare_comparisons
    from alignkit.trainers import loop
    from alignkit.trainers.rm_config import RMConfig

    cfg = build_config(RMConfig, run_dir / "config.yaml", {})
    data = prepare_comparisons(load_records(cfg.data).records, load_tokenizer(MODEL, "right"), cfg.max_length)
    share = cfg.share_prompt  # the embedded default's SDPA takes the packed mask
    lengths = [c.packed_length if share else c.length for c in data.comparisons]
    stream = loop.micro_batches(
        lambda e: loop.length_grouped_batches(lengths, cfg.batch_size, cfg.seed, e, cfg.group_by_length),
        loop.BatchCursor(),
    )
    batches = [next(stream) for _ in range(rows[-1]["step"])]
    timed = [data.comparisons[i] for b in batches[rows[0]["step"] - 1 :] for i in b]
    if not share:
        return flops_of([len(s) for c in timed for s in c.sequences], lora_r)
    packed = [(c.shared_prefix, [len(s) - c.shared_prefix for s in c.sequences]) for c in timed]
    return flops_of_packed(packed, lora_r)


def worker_trl(args) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from alignkit.models.registry import load_tokenizer, resolve

    tokenizer = load_tokenizer(MODEL, padding_side="right")
    timed: dict[str, float] = {"seconds": 0.0, "tokens": 0.0, "steps": 0}
    lengths: list[int] = []
    state = {"step": 0, "start": 0.0, "tokens": 0.0}

    class Timed(RewardTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                real = inputs["attention_mask"].sum(dim=1).tolist()
                state["tokens"] += sum(real)
                if state["step"] >= args.warmup:
                    lengths.extend(int(t) for t in real)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    deadline = time.perf_counter() + args.seconds if args.seconds else None

    class Clock(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            state["start"], state["tokens"] = time.perf_counter(), 0.0

        def on_step_end(self, a, s, c, **kw):
            if state["step"] >= args.warmup:
                timed["seconds"] += time.perf_counter() - state["start"]
                timed["tokens"] += state["tokens"]
                timed["steps"] += 1
            state["step"] += 1
            if deadline is not None and time.perf_counter() > deadline:
                c.should_training_stop = True

    bf16_weights = args.dtype == "bf16"
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve(MODEL),
        num_labels=1,
        dtype=torch.bfloat16 if bf16_weights else torch.float32,
        use_safetensors=True,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    config = RewardConfig(
        output_dir=str(Path(args.out) / "trl"),
        per_device_train_batch_size=args.batch,
        max_steps=(args.steps if args.seconds else args.warmup + args.steps),
        max_length=args.max_length,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
        use_cpu=True,
        **({"gradient_checkpointing": False} if bf16_weights else {}),
    )
    peft = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="SEQ_CLS",
    )
    dataset = load_dataset("json", data_files=args.data, split="train")
    trainer = Timed(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[Clock()],
    )
    settings = {
        "mixed_precision": trainer.accelerator.mixed_precision,
        "gradient_checkpointing": config.gradient_checkpointing,
        "weights": str(model.dtype),
    }
    start = time.perf_counter()
    trainer.train()
    result = {"tool": "trl", "settings": settings, "peak_rss": peak_rss_bytes()}
    if args.eval_data:
        result.update(_trl_quality(trainer, tokenizer, args, time.perf_counter() - start, state["step"]))
        return result
    result.update(
        {
            "steps": timed["steps"],
            "seconds": timed["seconds"],
            "tokens": timed["tokens"],
            "tokens_per_s": timed["tokens"] / timed["seconds"],
            "flops": flops_of(lengths, args.rank),
        }
    )
    return result


def _trl_quality(trainer, tokenizer, args, seconds: float, steps: int) -> dict:
    """Merge TRL's adapter, save a plain classifier and score it with alignkit's evaluator."""
    from alignkit.data.load import load_records
    from alignkit.evaluation.reward_model import evaluate_comparisons
    from alignkit.rewards.comparisons import prepare_comparisons
    from alignkit.rewards.model import load_reward_model

    folder = Path(args.out) / "trl-merged"
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    rm = load_reward_model(folder, dtype="bf16", max_length=args.max_length)
    evals = prepare_comparisons(load_records(args.eval_data).records, rm.tokenizer, args.max_length)
    result = evaluate_comparisons(rm, evals.comparisons, 16)
    return {
        "steps": steps,
        "train_seconds": seconds,
        "accuracy": result["accuracy"],
        "pairs": result["pairs"],
    }


# ------------------------------------------------------------------ main
def child(
    tool: str,
    data: Path,
    out: Path,
    args,
    dtype: str,
    seconds: float = 0.0,
    eval_data: Path | None = None,
    steps: int | None = None,
    rm_options: dict | None = None,
    tag: str | None = None,
) -> dict:
    argv = [
        __file__,
        "--worker",
        tool,
        "--data-file",
        str(data),
        "--out",
        str(out / f"{tool}-{tag or dtype}"),
        "--steps",
        str(steps or args.steps),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
        "--max-length",
        str(args.max_length),
        "--rank",
        str(args.rank),
        "--dtype",
        dtype,
        "--seconds",
        str(seconds),
    ]
    if eval_data is not None:
        argv += ["--eval-data", str(eval_data)]
    if rm_options:
        argv += ["--rm-options", json.dumps(rm_options)]
    started = time.perf_counter()
    result = run_child(argv, timeout=3600)
    result["wall_seconds"] = time.perf_counter() - started
    print(
        f"  {tool} {tag or dtype}: {json.dumps({k: v for k, v in result.items() if k != 'flops'})}",
        flush=True,
    )
    return result


def throughput(args) -> None:
    path = SHARED / "hh-rlhf-harmless-dev.jsonl"
    with tempfile.TemporaryDirectory(prefix="rm-vs-trl-") as tmp:
        out = Path(tmp)
        records = fitting_records(path, args.max_length)
        data = write_jsonl(records, out / "pairs.jsonl")
        print(
            f"{len(records)} pairs of {path.name} fit {args.max_length} tokens; {args.warmup} warm-up + "
            f"{args.steps} timed steps of {args.batch} pairs, LoRA r={args.rank}",
            flush=True,
        )
        peak = matmul_peak_flops()
        print(f"bf16 matmul peak: {peak / 1e9:.0f} GFLOP/s", flush=True)
        ours = child("alignkit", data, out, args, "auto")
        trl_default = child("trl", data, out, args, "default")
        if args.only_default:  # (a) alone: a quick check of the defaults
            print_json_line(
                {
                    "throughput_ratio_default": ours["tokens_per_s"] / trl_default["tokens_per_s"],
                    "peak_rss_ratio": ours["peak_rss"] / trl_default["peak_rss"],
                    "mfu": ours["flops"] / ours["seconds"] / peak,
                    "tokens_per_s": {
                        "alignkit": ours["tokens_per_s"],
                        "trl_default": trl_default["tokens_per_s"],
                    },
                    "peak_rss_gb": {
                        "alignkit": ours["peak_rss"] / 1e9,
                        "trl_default": trl_default["peak_rss"] / 1e9,
                    },
                    "matmul_peak_gflops": peak / 1e9,
                    "machine": machine(),
                }
            )
            return
        # (b) the same settings: bf16 weights and no activation checkpointing for both tools
        ours_same = child(
            "alignkit", data, out, args, "auto", rm_options={"activation_memory_gb": 0}, tag="bf16"
        )
        trl_same = child("trl", data, out, args, "bf16")
        # alignkit's engine with none of its own speed-ups (shared prompt, CPU attention, compiled layers)
        plain = {"activation_memory_gb": 0, "share_prompt": False, "cpu_attention": False, "compile": False}
        ours_plain = child("alignkit", data, out, args, "auto", rm_options=plain, tag="plain")
        # the defaults without --compile: what compiling buys, and what it costs in the warm-up steps
        ours_eager = child(
            "alignkit", data, out, args, "auto", rm_options={"compile": False}, tag="no-compile"
        )
    mfu = ours["flops"] / ours["seconds"] / peak
    result = {
        "throughput_ratio_default": ours["tokens_per_s"] / trl_default["tokens_per_s"],
        "throughput_ratio_same": ours_same["tokens_per_s"] / trl_same["tokens_per_s"],
        "throughput_ratio_same_plain": ours_plain["tokens_per_s"] / trl_same["tokens_per_s"],
        "peak_rss_ratio": ours["peak_rss"] / trl_default["peak_rss"],
        "mfu": mfu,
        "compile_speedup": ours["tokens_per_s"] / ours_eager["tokens_per_s"],
        "mfu_no_compile": ours_eager["flops"] / ours_eager["seconds"] / peak,
        "warmup_seconds": {
            "alignkit": ours["warmup_seconds"],
            "alignkit_no_compile": ours_eager["warmup_seconds"],
        },
        "mfu_same": ours_same["flops"] / ours_same["seconds"] / peak,
        "mfu_trl_default": trl_default["flops"] / trl_default["seconds"] / peak,
        "mfu_trl_same": trl_same["flops"] / trl_same["seconds"] / peak,
        "tokens_per_s": {
            "alignkit": ours["tokens_per_s"],
            "alignkit_bf16_no_ckpt": ours_same["tokens_per_s"],
            "alignkit_plain": ours_plain["tokens_per_s"],
            "alignkit_no_compile": ours_eager["tokens_per_s"],
            "alignkit_forwarded": ours["forward_tokens_per_s"],
            "alignkit_bf16_no_ckpt_forwarded": ours_same["forward_tokens_per_s"],
            "trl_default": trl_default["tokens_per_s"],
            "trl_bf16": trl_same["tokens_per_s"],
        },
        "peak_rss_gb": {
            "alignkit": ours["peak_rss"] / 1e9,
            "alignkit_bf16_no_ckpt": ours_same["peak_rss"] / 1e9,
            "alignkit_plain": ours_plain["peak_rss"] / 1e9,
            "alignkit_no_compile": ours_eager["peak_rss"] / 1e9,
            "trl_default": trl_default["peak_rss"] / 1e9,
            "trl_bf16": trl_same["peak_rss"] / 1e9,
        },
        "padding_efficiency_alignkit": ours["padding_efficiency"],
        "matmul_peak_gflops": peak / 1e9,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_pairs": args.batch,
        "max_length": args.max_length,
        "lora_r": args.rank,
        "trl_settings_default": trl_default["settings"],
        "machine": machine(),
    }
    print_json_line(result)


def quality(args) -> None:
    """alignkit trains ``--quality-steps``; TRL (defaults) gets the same wall-clock, then both are evaluated."""
    from alignkit.data.load import load_records, split_records

    path = SHARED / f"hh-rlhf-{args.data}-dev.jsonl"
    records = load_records(str(path), kind="preference", skip_invalid=True).records
    train, evals = split_records(records, 0.2, seed=0)
    with tempfile.TemporaryDirectory(prefix="rm-quality-") as tmp:
        out = Path(tmp)
        train_path, eval_path = (
            write_jsonl(train, out / "train.jsonl"),
            write_jsonl(evals, out / "eval.jsonl"),
        )
        print(
            f"{path.name}: {len(train)} train / {len(evals)} eval pairs; alignkit {args.quality_steps} steps of "
            f"{args.batch} pairs, TRL the same wall-clock",
            flush=True,
        )
        ours = child("alignkit", train_path, out, args, "auto", eval_data=eval_path, steps=args.quality_steps)
        budget = ours["train_seconds"]
        # TRL's schedule is sized to the steps that fit (from its measured step time); the deadline stops it there.
        trl_steps = max(1, int(budget / args.trl_step_seconds)) if args.trl_step_seconds else 100_000
        theirs = child(
            "trl", train_path, out, args, "default", seconds=budget, eval_data=eval_path, steps=trl_steps
        )
    print_json_line(
        {
            "data": args.data,
            "budget_minutes": budget / 60,
            "accuracy_alignkit": ours["accuracy"],
            "accuracy_trl": theirs["accuracy"],
            "steps_alignkit": ours["steps"],
            "steps_trl": theirs["steps"],
            "eval_pairs": ours["pairs"],
            "train_seconds_alignkit": ours["train_seconds"],
            "train_seconds_trl": theirs["train_seconds"],
            "batch_pairs": args.batch,
            "max_length": args.max_length,
            "lora_r": args.rank,
            "machine": machine(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per tool")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (alignkit compiles in them)"
    )
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--quality", action="store_true", help="run the quality comparison instead")
    parser.add_argument(
        "--only-default", action="store_true", help="run setting (a) only (no same-settings runs)"
    )
    parser.add_argument("--quality-steps", type=int, default=150, help="alignkit's steps in the quality run")
    parser.add_argument(
        "--trl-step-seconds",
        type=float,
        default=0.0,
        help="TRL's seconds per step (from the throughput run) to size its schedule",
    )
    parser.add_argument(
        "--data", choices=("harmless", "helpful"), default="harmless", help="quality run data"
    )
    parser.add_argument("--worker", choices=("alignkit", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--data-file", dest="data_file", help=argparse.SUPPRESS)
    parser.add_argument("--eval-data", dest="eval_data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rm-options", dest="rm_options", help=argparse.SUPPRESS
    )  # JSON overrides (exploration)
    args = parser.parse_args()
    if args.worker:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        args.data = args.data_file
        result = worker_alignkit(args) if args.worker == "alignkit" else worker_trl(args)
        print(json.dumps(result))
        return
    if not (SHARED / "hh-rlhf-harmless-dev.jsonl").is_file():
        print(f"skipped: {SHARED} not found (the benchmark needs ../shared/data)")
        print_json_line({"skipped": True})
        return
    if args.quality:
        quality(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
