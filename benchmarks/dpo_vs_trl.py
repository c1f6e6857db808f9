"""`alignkit dpo` versus `trl dpo` (TRL 1.16's own CLI) on the embedded default model: tokens/s and peak RSS.

Both tools train the same LoRA rank, batch, max length and number of steps on the same pairs (the first
``--pairs`` of ``../shared/data/preference/hh-rlhf-harmless-dev.jsonl``, fitted to ``--max-length`` by
alignkit's loader and written once as a TRL conversational jsonl that both read), in two settings:

(a) defaults: each tool's own defaults for everything else. Both train ``--batch`` pairs per optimizer
    step. TRL's defaults: all of them in one micro-batch, random order, fp32 weights under bf16 autocast,
    gradient checkpointing on, LoRA on q_proj/v_proj only (PEFT's default for llama); it needs
    ``--use_cpu`` to run at all on a CPU. alignkit's defaults: micro-batches of one pair accumulated
    (``--batch-size 1 --grad-accum B``), batches grouped by length, a bf16 frozen base with fp32 LoRA on
    every linear layer under bf16 autocast, gradient checkpointing off.
    Note: `trl dpo` starts its script through `accelerate launch`, which sets OMP_NUM_THREADS=1 on a CPU
    unless told otherwise, so TRL's out-of-the-box run uses one thread where alignkit uses all cores.
    ``trl_default_all_threads`` is the same TRL default run with OMP_NUM_THREADS = the core count, and
    ``throughput_ratio_default_all_threads`` the ratio against it.
(b) same settings: TRL is told alignkit's choices (and gets every core) (micro-batches of one pair, length grouping through a
    ``length`` column in the data, bf16 weights, no gradient checkpointing, LoRA on all linear layers,
    same lr schedule). alignkit also forwards each pair's prompt once and runs the LM head on answer
    tokens only (``--share-prompt``, on by default, same log-probs; TRL's CLI has nothing like it), so
    ``throughput_ratio_same`` includes that; ``throughput_ratio_same_no_share`` is alignkit with
    ``--no-share-prompt``, i.e. TRL's own forward, against the same TRL run.

tokens/s = tokens the trainer saw (TRL's ``num_tokens``: prompt + chosen + rejected, padding excluded) /
HF Trainer's ``train_runtime`` (the training loop only: no model loading or tokenization), for both tools.
Peak RSS: each tool runs in its own wrapper process, which reports ``ru_maxrss`` of its finished children
(the largest process: `trl dpo` trains in a child of `accelerate launch`).

Usage (time-boxed to ~10 minutes on 2 CPU cores; run alone):

    flock /tmp/alignkit-cpu.lock .venv/bin/python benchmarks/dpo_vs_trl.py

The last line printed is one JSON object with throughput_ratio_default, throughput_ratio_same,
peak_rss_ratio (alignkit / TRL; > 1 means alignkit is faster, < 1 that it uses less memory).

``--quality SECONDS_PER_STEP_RATIO`` instead runs the quality comparison (~30 minutes): alignkit trains
100 steps of 4 pairs on 80% of the file (a seeded `split_records`), TRL the same hyperparameters with its
default engine settings (fp32 weights, gradient checkpointing) for as many steps as fit in the same
wall-clock (100 / the ratio measured by the throughput run), and both adapters are scored by the same
evaluator on the other 20%: held-out implicit-reward accuracy (ties count half), reference = the base
model with the adapter disabled.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import machine, print_json_line  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "preference" / "hh-rlhf-harmless-dev.jsonl"
BIN = Path(sys.executable).parent


def wrapped(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``cmd`` inside a fresh wrapper process; return (its result, peak RSS in bytes of its children)."""
    code = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(p.stderr)\n"
        "sys.stdout.write(p.stdout)\n"
        "print(json.dumps({'rc': p.returncode, 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env, timeout=timeout
    )
    tail = json.loads(proc.stdout.strip().splitlines()[-1])
    if tail["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({tail['rc']}):\n{proc.stderr[-4000:]}")
    proc.stdout = "\n".join(proc.stdout.strip().splitlines()[:-1])
    return proc, tail["maxrss_kib"] * 1024


def prepare_data(folder: Path, pairs: int, max_length: int) -> tuple[Path, int]:
    """The first ``pairs`` pairs, fitted to ``max_length`` by alignkit, as TRL's conversational jsonl."""
    from alignkit.data.load import load_records
    from alignkit.models.registry import load_tokenizer
    from alignkit.trainers.trl.data import DataStats, fit_records

    records = load_records(str(DATA), kind="preference", skip_invalid=True, limit=pairs).records
    records = fit_records(load_tokenizer("smollm2-135m-instruct"), records, max_length, DataStats())
    (folder / "data").mkdir()
    path = folder / "data" / "train.jsonl"
    # `length` (tokens of the pair's longer sequence) lets TRL group by length in the "same settings" run
    path.write_text("".join(json.dumps({**r.to_dict(), "length": r.meta["tokens"]}) + "\n" for r in records))
    return path, len(records)


def trl_logs(stdout: str) -> list[dict]:
    """The log dicts TRL's CLI prints (``{'loss': '0.69', ...}``), as numbers."""
    rows = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                row = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
            rows.append({k: float(v) for k, v in row.items() if _is_number(v)})
    return rows


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def run_trl(
    model_dir: str,
    data: Path,
    out: Path,
    env: dict,
    shape: dict,
    same: bool,
    timeout: float,
    threads: int | None = None,
) -> dict:
    """One `trl dpo` run of ``shape`` (steps, batch, max_length, rank); ``same``: alignkit's settings."""
    steps, batch, max_length, rank = (shape[k] for k in ("steps", "batch", "max_length", "rank"))
    cmd = [
        str(BIN / "trl"),
        "dpo",
        "--model_name_or_path",
        model_dir,
        "--dataset_name",
        str(data.parent),
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--max_length",
        str(max_length),
        "--use_peft",
        "--lora_r",
        str(rank),
        "--lora_alpha",
        str(2 * rank),
        "--use_cpu",
        "True",  # required: TRL's bf16 default is refused on a CPU otherwise
        "--logging_steps",
        "1",  # for num_tokens; logging costs nothing measurable
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--seed",
        "0",
    ]
    if same:
        cmd += [
            "--per_device_train_batch_size",
            "1",
            "--gradient_accumulation_steps",
            str(batch),
            "--train_sampling_strategy",
            "group_by_length",
            "--remove_unused_columns",
            "False",
            "--gradient_checkpointing",
            "False",
            "--dtype",
            "bfloat16",
            "--bf16",
            "True",
            "--lora_target_modules",
            "all-linear",
            "--learning_rate",
            "1e-4",
            "--lr_scheduler_type",
            "cosine",
            "--warmup_steps",
            "0.03",
        ]
    else:
        cmd += ["--per_device_train_batch_size", str(batch)]
    env = {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # accelerate launch would otherwise set 1 on a CPU
    started = time.perf_counter()
    proc, rss = wrapped(cmd, env, timeout)
    wall = time.perf_counter() - started
    logs = trl_logs(proc.stdout)
    tokens = max((r["num_tokens"] for r in logs if "num_tokens" in r), default=0.0)
    runtime = next((r["train_runtime"] for r in logs if "train_runtime" in r), None)
    if not tokens or not runtime:
        raise RuntimeError(
            f"could not read num_tokens/train_runtime from trl's output:\n{proc.stdout[-2000:]}"
        )
    return {
        "tokens": tokens,
        "train_runtime": runtime,
        "tokens_per_s": tokens / runtime,
        "peak_rss": rss,
        "wall": wall,
        "steps": steps,
    }


def run_alignkit(
    data: Path, out: Path, env: dict, shape: dict, timeout: float, extra: tuple[str, ...] = ()
) -> dict:
    """One `alignkit dpo` run of ``shape`` with its defaults (plus ``extra`` flags)."""
    steps, batch, max_length, rank = (shape[k] for k in ("steps", "batch", "max_length", "rank"))
    cmd = [
        str(BIN / "alignkit"),
        "dpo",
        "--data",
        str(data),
        "--output",
        str(out),
        "--max-steps",
        str(steps),
        "--batch-size",
        "1",
        "--grad-accum",
        str(batch),
        "--max-length",
        str(max_length),
        "--lora-r",
        str(rank),
        "--lora-alpha",
        str(2 * rank),
        "--save-every",
        "0",
        "--json",
        "--quiet",
        *extra,
    ]
    started = time.perf_counter()
    proc, rss = wrapped(cmd, env, timeout)
    wall = time.perf_counter() - started
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    runtime = report["trainer_runtime"] or report["train_seconds"]
    return {
        "tokens": report["train_tokens"],
        "train_runtime": runtime,
        "tokens_per_s": report["train_tokens"] / runtime,
        "peak_rss": rss,
        "wall": wall,
        "steps": report["steps"],
        "precision": report["precision"],
    }


def evaluate_adapter(
    model_dir: str, adapter_dir: Path, eval_path: Path, beta: float, max_length: int
) -> dict:
    """alignkit's held-out pair metrics for any saved LoRA adapter (reference: the base, adapter disabled)."""
    import datasets
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from alignkit.models.registry import load_tokenizer
    from alignkit.trainers.dpo import evaluate_pairs

    tokenizer = load_tokenizer(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    data = datasets.load_dataset("json", data_files=str(eval_path), split="train")
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(
            output_dir=tmp,
            per_device_eval_batch_size=1,  # one pair per forward: no padding between pairs
            max_length=max_length,
            bf16=True,
            use_cpu=True,
            report_to=[],
            gradient_checkpointing=False,
            beta=beta,
        )
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer
        )
        if "ref" in trainer.model.peft_config:  # TRL's frozen copy of a loaded adapter: we want the base
            trainer.model.delete_adapter("ref")
        return evaluate_pairs(trainer, trainer.eval_dataset, beta)


def quality(ratio: float, timeout: float) -> None:
    """The quality comparison (see the module docstring); prints one JSON line."""
    from alignkit.data.load import load_records, split_records
    from alignkit.models.default import prepare_default
    from alignkit.models.registry import load_tokenizer
    from alignkit.trainers.trl.data import DataStats, fit_records

    model_dir = str(prepare_default())
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }
    steps, batch, max_length, rank, beta, lr = 100, 4, 512, 16, 0.1, 1e-4
    records = load_records(str(DATA), kind="preference", skip_invalid=True).records
    train, held_out = split_records(records, 0.2, seed=0)
    tokenizer = load_tokenizer(model_dir)
    train = fit_records(tokenizer, train, max_length, DataStats())
    held_out = fit_records(tokenizer, held_out, max_length, DataStats())
    trl_steps = max(1, round(steps / ratio))
    print(
        f"quality: {len(train)} train / {len(held_out)} held-out pairs; alignkit {steps} steps, TRL {trl_steps} "
        f"steps (same wall-clock at ratio {ratio:.2f})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dpo-quality-") as tmp:
        folder = Path(tmp)
        (folder / "train").mkdir()
        train_path, eval_path = folder / "train" / "train.jsonl", folder / "eval.jsonl"
        train_path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in train))
        eval_path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in held_out))
        cmd = [
            str(BIN / "alignkit"),
            "dpo",
            "--data",
            str(train_path),
            "--output",
            str(folder / "ak"),
            "--max-steps",
            str(steps),
            "--batch-size",
            "1",
            "--grad-accum",
            str(batch),
            "--max-length",
            str(max_length),
            "--lora-r",
            str(rank),
            "--lora-alpha",
            str(2 * rank),
            "--lr",
            str(lr),
            "--beta",
            str(beta),
            "--save-every",
            "0",
            "--json",
            "--quiet",
        ]
        proc, _ = wrapped(cmd, env, timeout)
        ak = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"alignkit trained {ak['steps']} steps in {ak['trainer_runtime']:.0f} s", flush=True)
        cmd = [
            str(BIN / "trl"),
            "dpo",
            "--model_name_or_path",
            model_dir,
            "--dataset_name",
            str(train_path.parent),
            "--output_dir",
            str(folder / "trl"),
            "--max_steps",
            str(trl_steps),
            "--per_device_train_batch_size",
            str(batch),
            "--max_length",
            str(max_length),
            "--use_peft",
            "--lora_r",
            str(rank),
            "--lora_alpha",
            str(2 * rank),
            "--learning_rate",
            str(lr),
            "--beta",
            str(beta),
            "--use_cpu",
            "True",
            "--logging_steps",
            "10",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--seed",
            "0",
        ]
        proc, _ = wrapped(cmd, {**env, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}, timeout)
        trl_runtime = next((r["train_runtime"] for r in trl_logs(proc.stdout) if "train_runtime" in r), None)
        print(f"TRL trained {trl_steps} steps in {trl_runtime:.0f} s", flush=True)
        ours = evaluate_adapter(model_dir, folder / "ak", eval_path, beta, max_length)
        theirs = evaluate_adapter(model_dir, folder / "trl", eval_path, beta, max_length)
    print_json_line(
        {
            "benchmark": "dpo_quality",
            "train_pairs": len(train),
            "eval_pairs": ours["eval_pairs"],
            "alignkit_steps": steps,
            "alignkit_train_seconds": ak["trainer_runtime"],
            "alignkit_eval_accuracy": ours["eval_accuracy"],
            "alignkit_eval_margin": ours["eval_margin"],
            "trl_steps": trl_steps,
            "trl_train_seconds": trl_runtime,
            "trl_eval_accuracy": theirs["eval_accuracy"],
            "trl_eval_margin": theirs["eval_margin"],
            "batch": batch,
            "max_length": max_length,
            "lora_r": rank,
            "beta": beta,
            "lr": lr,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="pairs per step (both tools)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=128, help="pairs loaded (>= steps x batch)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument(
        "--quality",
        type=float,
        default=None,
        metavar="RATIO",
        help="run the quality comparison; RATIO = alignkit/TRL-default throughput measured before",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per tool, in alternating order; the fastest counts (other jobs on a shared "
        "machine slow single runs down)",
    )
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} is not there (the shared data sits beside the project)")
        print_json_line({"skipped": True, "reason": "no shared data"})
        return
    if args.quality is not None:
        quality(args.quality, max(args.timeout, 3600.0))
        return

    from alignkit.models.default import prepare_default

    model_dir = str(prepare_default())
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
    }
    info = machine()
    print(f"machine: {info}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dpo-vs-trl-") as tmp:
        folder = Path(tmp)
        data, n = prepare_data(folder, args.pairs, args.max_length)
        shape = dict(steps=args.steps, batch=args.batch, max_length=args.max_length, rank=args.lora_r)
        cores = os.cpu_count() or 1
        print(f"data: {n} pairs -> {data}; {shape}", flush=True)
        runs = {
            "alignkit": lambda i: run_alignkit(data, folder / f"ak{i}", env, shape, args.timeout),
            "alignkit_no_share": lambda i: run_alignkit(
                data, folder / f"ak-noshare{i}", env, shape, args.timeout, extra=("--no-share-prompt",)
            ),
            "trl_same": lambda i: run_trl(
                model_dir, data, folder / f"trl-same{i}", env, shape, True, args.timeout, threads=cores
            ),
            "trl_default": lambda i: run_trl(
                model_dir, data, folder / f"trl-default{i}", env, shape, False, args.timeout
            ),
            "trl_default_all_threads": lambda i: run_trl(
                model_dir, data, folder / f"trl-default-t{i}", env, shape, False, args.timeout, threads=cores
            ),
        }
        all_runs: dict[str, list[dict]] = {name: [] for name in runs}
        for i in range(args.repeats):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            for name in order:
                r = runs[name](i)
                r["load_avg_1m"] = os.getloadavg()[0]
                all_runs[name].append(r)
                print(
                    f"{name} #{i + 1}: {r['tokens_per_s']:.1f} tokens/s ({r['tokens']:.0f} tokens in "
                    f"{r['train_runtime']:.1f} s), peak RSS {r['peak_rss'] / 2**20:.0f} MiB, wall {r['wall']:.0f} s, "
                    f"load {r['load_avg_1m']:.2f}",
                    flush=True,
                )
        results = {}
        for name, rs in all_runs.items():
            best = max(rs, key=lambda r: r["tokens_per_s"])
            results[name] = {**best, "peak_rss": min(r["peak_rss"] for r in rs)}
    ak, same, default = results["alignkit"], results["trl_same"], results["trl_default"]
    default_t = results["trl_default_all_threads"]
    print_json_line(
        {
            "benchmark": "dpo_vs_trl",
            **shape,
            "pairs": n,
            "alignkit_tokens_per_s": ak["tokens_per_s"],
            "trl_default_tokens_per_s": default["tokens_per_s"],
            "trl_same_tokens_per_s": same["tokens_per_s"],
            "alignkit_peak_rss_mib": ak["peak_rss"] / 2**20,
            "trl_default_peak_rss_mib": default["peak_rss"] / 2**20,
            "trl_same_peak_rss_mib": same["peak_rss"] / 2**20,
            "alignkit_s_per_step": ak["train_runtime"] / args.steps,
            "trl_default_s_per_step": default["train_runtime"] / args.steps,
            "throughput_ratio_default": ak["tokens_per_s"] / default["tokens_per_s"],
            "throughput_ratio_same": ak["tokens_per_s"] / same["tokens_per_s"],
            "throughput_ratio_same_no_share": results["alignkit_no_share"]["tokens_per_s"]
            / same["tokens_per_s"],
            "alignkit_no_share_tokens_per_s": results["alignkit_no_share"]["tokens_per_s"],
            "throughput_ratio_default_all_threads": ak["tokens_per_s"] / default_t["tokens_per_s"],
            "trl_default_all_threads_tokens_per_s": default_t["tokens_per_s"],
            "peak_rss_ratio_default_all_threads": ak["peak_rss"] / default_t["peak_rss"],
            "peak_rss_ratio": ak["peak_rss"] / default["peak_rss"],
            "peak_rss_ratio_same": ak["peak_rss"] / same["peak_rss"],
            "repeats": args.repeats,
            "tokens_per_s_all": {name: [r["tokens_per_s"] for r in rs] for name, rs in all_runs.items()},
            "load_avg_1m_start": info["load_avg_1m"],
            "load_avg_1m_end": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
