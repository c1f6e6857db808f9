"""alignkit grpo / rloo versus TRL 1.16's GRPOTrainer / RLOOTrainer on this CPU (no vLLM), in one run.

The same work for all four, each in its own subprocess, one after the other:

- policy: the embedded default (SmolLM2-135M-Instruct) with a LoRA adapter, r=16, alpha=32, all linear
  layers; bf16 (alignkit ``--dtype bf16``: bf16 base, fp32 adapter under bf16 autocast; TRL
  ``model_init_kwargs={"dtype": "bfloat16"}`` and ``bf16=True``, PEFT keeping the adapter in fp32);
- 8 prompts x 8 answers per step (64 answers), up to 64 new tokens at temperature 1.0, beta 0.04
  (the KL term needs the reference's forward pass in both), one iteration, one optimizer step per rollout;
  TRL in micro-batches of 8 answers (``per_device_train_batch_size=8``, 8 accumulation steps), alignkit
  with ``--forward-batch-size 8`` (its update runs 8 answers at a time too);
- reward: one plain Python function with TRL's signature, the same for both;
- 5 steps; the step time is the mean of steps 2-5 (step 1 pays one-off warm-up), measured inside
  each process (TRL: between ``on_step_end`` callbacks; alignkit: ``perf/step_seconds``); peak RSS is
  each process's own ``VmHWM`` (loading included).

RLOO: the same job with each tool's RLOO (alignkit ``rloo``: leave-one-out advantage, KL in the reward,
sequence-level loss; TRL's ``RLOOTrainer``), beta 0.04 too.

Run it on an otherwise idle machine (``flock /tmp/alignkit-cpu.lock`` if others share it)::

    .venv/bin/python benchmarks/grpo_vs_trl.py

The last line is one JSON object: ``step_time_ratio`` and ``peak_rss_ratio`` (alignkit / TRL, GRPO;
targets <= 0.35 and <= 0.5), ``rloo_step_time_ratio`` and ``rloo_peak_rss_ratio``, the absolute figures and
the machine. With ``--compile``, alignkit grpo also runs with ``--compile`` (compiled decoder layers and
decode step; the first step compiles, so it is left out like every first step): ``compiled_step_time_ratio``
and ``compiled_peak_rss_ratio`` against the same TRL run. The targets are judged on the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json_line  # noqa: E402

PROMPTS = 8
GROUP = 8
NEW_TOKENS = 64
STEPS = 5
LORA_R = 16
BETA = 0.04
TARGETS = {"step_time_ratio": 0.35, "peak_rss_ratio": 0.5}

REWARD = """
def reward(completions, **kwargs):
    # varied, cheap and deterministic: the same function for both tools (TRL passes chat messages)
    texts = [c if isinstance(c, str) else " ".join(m["content"] for m in c) for c in completions]
    return [float(len(t.split()) % 7) + 0.1 * t.count(".") for t in texts]
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(work: Path) -> dict[str, str]:
    from alignkit.demo.data import demo_prompts
    from alignkit.models import default

    model_dir = default.prepare_default()
    base = demo_prompts()
    prompts = [base[i % len(base)] for i in range(PROMPTS * STEPS)]
    prompts_path = work / "prompts.jsonl"
    prompts_path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    (work / "bench_reward.py").write_text(REWARD)
    return {"model_dir": str(model_dir), "prompts": str(prompts_path), "work": str(work)}


ALIGNKIT_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[2])
from alignkit import console
from alignkit.config import build_config
from alignkit.runs import read_metrics
from alignkit.trainers.online.grpo import run_grpo
from alignkit.trainers.online.grpo_config import GRPOConfig, RLOOConfig
from pathlib import Path
a = json.loads(sys.argv[1])
cls = RLOOConfig if a["algo"] == "rloo" else GRPOConfig
cfg = build_config(cls, None, dict(
    prompts=a["prompts"], reward_fn=[a["work"] + "/bench_reward.py:reward"], output=a["out"],
    batch_size=a["prompts_per_step"], group_size=a["group"], max_new_tokens=a["new_tokens"], temperature=1.0,
    lora_r=a["lora_r"], lora_alpha=2 * a["lora_r"], max_steps=a["steps"], save_every=0, eval_split=0.0,
    beta=a["beta"], num_iterations=1, forward_batch_size=8, dtype="bf16", lr=1e-5, compile=a.get("compile", False),
))
console.set_quiet(True)
run_grpo(cfg)
rows = [r for r in read_metrics(Path(a["out"]) / "metrics.jsonl") if "eval" not in r]
status = open("/proc/self/status").read()
peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"step_seconds": [r["perf/step_seconds"] for r in rows], "peak_rss_mb": peak,
                  "generate_seconds": [r["perf/generate_seconds"] for r in rows],
                  "update_seconds": [r["perf/update_seconds"] for r in rows],
                  "tokens": [r["gen/response_tokens"] for r in rows]}))
"""

TRL_CHILD = """
import json, sys, time, tempfile, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[2])
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoTokenizer, TrainerCallback
from bench_reward import reward
a = json.loads(sys.argv[1])
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(a["model_dir"], padding_side="left")
prompts = [json.loads(line)["prompt"] for line in open(a["prompts"])]
dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
common = dict(
    output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, gradient_accumulation_steps=a["group"] * a["prompts_per_step"] // 8,
    num_generations=a["group"], max_completion_length=a["new_tokens"], temperature=1.0, beta=a["beta"],
    num_iterations=1, learning_rate=1e-5, max_steps=a["steps"], bf16=True, use_cpu=True, report_to="none",
    save_strategy="no", logging_steps=1, seed=0, disable_tqdm=True, model_init_kwargs={"dtype": "bfloat16"},
    shuffle_dataset=False,
)
if a["algo"] == "rloo":
    from trl import RLOOConfig as Config, RLOOTrainer as Trainer
else:
    from trl import GRPOConfig as Config, GRPOTrainer as Trainer
config = Config(**common)
peft_config = LoraConfig(r=a["lora_r"], lora_alpha=2 * a["lora_r"], target_modules="all-linear", lora_dropout=0.0,
                         task_type="CAUSAL_LM")
marks = []
class Clock(TrainerCallback):
    def on_train_begin(self, *x, **k):
        marks.append(time.perf_counter())
    def on_step_end(self, *x, **k):
        marks.append(time.perf_counter())
trainer = Trainer(model=a["model_dir"], reward_funcs=[reward], args=config, train_dataset=dataset,
                  processing_class=tok, peft_config=peft_config, callbacks=[Clock()])
trainer.train()
status = open("/proc/self/status").read()
peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
lengths = [r.get("completions/mean_length") for r in trainer.state.log_history if "completions/mean_length" in r]
print(json.dumps({"step_seconds": [b - a for a, b in zip(marks, marks[1:])], "peak_rss_mb": peak,
                  "mean_length": lengths}))
"""


def run_child(code: str, args: dict, work: str, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args), work],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(steps: list[float]) -> float:
    """The mean of the steps after the first (warm-up)."""
    rest = steps[1:] or steps
    return sum(rest) / len(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("grpo", "rloo"), help="run one algorithm only")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also run alignkit grpo with --compile (compiled layers and decode step): compiled_* figures",
    )
    opts = parser.parse_args()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result: dict = {"benchmark": "grpo_vs_trl", "machine": machine()}
    result["settings"] = {"prompts_per_step": PROMPTS, "group": GROUP, "new_tokens": NEW_TOKENS, "steps": STEPS,
                          "timed_steps": STEPS - 1, "lora_r": LORA_R, "beta": BETA, "dtype": "bf16"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="alignkit-bench-grpo-") as tmp:
        work = Path(tmp)
        paths = prepare(work)
        common = {**paths, "prompts_per_step": PROMPTS, "group": GROUP, "new_tokens": NEW_TOKENS, "steps": STEPS,
                  "lora_r": LORA_R, "beta": BETA}  # fmt: skip
        for algo in ("grpo", "rloo"):
            if opts.only and algo != opts.only:
                continue
            prefix = "" if algo == "grpo" else "rloo_"
            log(
                f"alignkit {algo}: {STEPS} steps of {PROMPTS} prompts x {GROUP} answers x {NEW_TOKENS} tokens ..."
            )
            ours = run_child(
                ALIGNKIT_CHILD, {**common, "algo": algo, "out": str(work / f"run-{algo}")}, tmp, env
            )
            log(
                f"  steps {ours['step_seconds']} (generate {ours['generate_seconds']}, update {ours['update_seconds']})"
            )
            log(f"  peak RSS {ours['peak_rss_mb']:.0f} MiB")
            log(f"TRL {algo.upper()}Trainer: the same job ...")
            trl = run_child(TRL_CHILD, {**common, "algo": algo}, tmp, env)
            log(f"  steps {trl['step_seconds']}, peak RSS {trl['peak_rss_mb']:.0f} MiB")
            ours_s, trl_s = timed(ours["step_seconds"]), timed(trl["step_seconds"])
            if opts.compile and algo == "grpo":
                log("alignkit grpo --compile: the same job ...")
                fast = run_child(
                    ALIGNKIT_CHILD,
                    {**common, "algo": algo, "out": str(work / "run-grpo-compiled"), "compile": True},
                    tmp,
                    env,
                )
                log(f"  steps {fast['step_seconds']}, peak RSS {fast['peak_rss_mb']:.0f} MiB")
                result.update({
                    "compiled_alignkit_step_s": timed(fast["step_seconds"]),
                    "compiled_alignkit_peak_rss_mb": fast["peak_rss_mb"],
                    "compiled_step_time_ratio": timed(fast["step_seconds"]) / trl_s,
                    "compiled_peak_rss_ratio": fast["peak_rss_mb"] / trl["peak_rss_mb"],
                    "compiled_first_step_s": fast["step_seconds"][0],
                })  # fmt: skip
            result.update({
                f"{prefix}alignkit_step_s": ours_s, f"{prefix}trl_step_s": trl_s,
                f"{prefix}alignkit_peak_rss_mb": ours["peak_rss_mb"], f"{prefix}trl_peak_rss_mb": trl["peak_rss_mb"],
                f"{prefix}alignkit_response_tokens": ours["tokens"], f"{prefix}trl_mean_length": trl["mean_length"],
                f"{prefix}step_time_ratio": ours_s / trl_s,
                f"{prefix}peak_rss_ratio": ours["peak_rss_mb"] / trl["peak_rss_mb"],
            })  # fmt: skip
    met = [
        result[f"{p}{k}"] <= target
        for p in ("", "rloo_")
        for k, target in TARGETS.items()
        if f"{p}{k}" in result
    ]
    result["targets_met"] = all(met) if met else None
    print_json_line(result)


if __name__ == "__main__":
    main()
