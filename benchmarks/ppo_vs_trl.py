"""alignkit ppo versus TRL 1.12.0's PPOTrainer (the last TRL release that had one), on this machine.

Same job for both, each in its own subprocess, one after the other in this run:

- policy: the embedded default (SmolLM2-135M-Instruct) with a LoRA adapter, r=16, alpha=32, all linear layers;
- reward model: the same base with a random scalar head (speed, not quality, is measured);
- 64 chat prompts (the embedded demo prompts, cycled), 8 prompts per rollout, 32 new tokens at
  temperature 0.7, one PPO epoch with one minibatch, five PPO steps (five rollout batches).

TRL is driven the way its PPOTrainer requires: a policy (PEFT LoRA: the reference is the policy
with the adapter disabled), a value model and a reward model (``AutoModelForSequenceClassification``,
num_labels=1, each its own copy of the base), and a dataset of tokenized prompts. TRL runs with its
own defaults otherwise (notably gradient checkpointing on) in fp32, as in the issue's measurement.
alignkit runs with its defaults (``--dtype auto``: bf16 on a CPU with native bf16, else fp32): one
base in memory with the policy, value and reward adapters.

TRL 1.12.0 is installed in a separate virtual environment made here on first use
(``$ALIGNKIT_TRL_VENV``, default /tmp/alignkit-bench-trl112) beside the same torch, transformers,
peft and accelerate versions as ours. Step time is the mean wall time of PPO steps 2 to 5 (rollout +
update, measured inside each process; the first step, with its one-off warm-up, is left out of both, and
four timed steps keep one run's figure from hanging on a single slow step); peak RSS is each process's own maximum resident
set size (getrusage), loading included.

Run it under the CPU lock so nothing else competes for the cores::

    flock /tmp/alignkit-cpu.lock .venv/bin/python benchmarks/ppo_vs_trl.py

The last line printed is one JSON object with ``step_time_ratio`` (alignkit / TRL; issue #21's target
<= 0.35) and ``peak_rss_ratio`` (target <= 0.35).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRL_VERSION = "1.12.0"
PINNED = ("torch", "transformers", "peft", "accelerate")
VENV = Path(os.environ.get("ALIGNKIT_TRL_VENV", "/tmp/alignkit-bench-trl112"))

PROMPTS = 64
BATCH = 8
NEW_TOKENS = 32
STEPS = 5
TIMED = slice(1, None)  # steps 2..STEPS: the first carries one-off warm-up in both
LORA_R = 16
TEMPERATURE = 0.7


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_trl_venv() -> Path:
    """The TRL 1.12.0 venv's python, created on first use with our torch/transformers/peft/accelerate versions."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".alignkit-trl-ready"
    versions = {name: importlib.metadata.version(name).split("+")[0] for name in PINNED}
    want = json.dumps({**versions, "trl": TRL_VERSION}, sort_keys=True)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    log(f"making the TRL {TRL_VERSION} environment in {VENV} (once) ...")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # torch first and pinned, so pip never pulls a CUDA build; then the rest at our versions.
    subprocess.run([*pip, f"torch=={versions['torch']}"], check=True)
    rest = [f"{name}=={versions[name]}" for name in PINNED if name != "torch"]
    subprocess.run([*pip, *rest, f"trl=={TRL_VERSION}"], check=True)
    stamp.write_text(want)
    return python


def prepare(work: Path) -> dict[str, str]:
    """The default checkpoint, the prompts file and an alignkit reward model dir with a random head."""
    import torch

    from alignkit.demo.data import demo_prompts
    from alignkit.models import default, heads, lora, registry
    from alignkit.models.device import resolve_precision
    from alignkit.rewards.model import RewardModel

    model_dir = default.prepare_default()
    base_prompts = demo_prompts()
    prompts = [base_prompts[i % len(base_prompts)] for i in range(PROMPTS)]
    prompts_path = work / "prompts.jsonl"
    prompts_path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    rm_dir = work / "rm" / "reward_model"
    torch.manual_seed(0)
    tokenizer = registry.load_tokenizer(default.DEFAULT_MODEL, padding_side="right")
    base = registry.load_model(default.DEFAULT_MODEL, dtype="fp32", tokenizer=tokenizer)
    model = lora.add_adapter(base, "reward", lora.LoraSettings(r=LORA_R, alpha=2 * LORA_R))
    head = heads.ScalarHead(base.config.hidden_size, init="reward")
    RewardModel(model, head, tokenizer, resolve_precision("fp32", lora=True), 1024, adapter="reward").save(
        rm_dir, base=default.DEFAULT_MODEL
    )
    return {"model_dir": str(model_dir), "prompts": str(prompts_path), "rm_dir": str(rm_dir)}


ALIGNKIT_CHILD = """
import json, resource, sys, time
from alignkit.config import build_config
from alignkit.trainers.online.config import PPOConfig
from alignkit.trainers.online.ppo import run_ppo
from alignkit.runs import read_metrics
from pathlib import Path
args = json.loads(sys.argv[1])
cfg = build_config(PPOConfig, None, dict(
    prompts=args["prompts"], reward_model=[args["rm_dir"]], output=args["out"], batch_size=args["batch"],
    max_new_tokens=args["new_tokens"], temperature=args["temperature"], ppo_epochs=1, num_mini_batches=1,
    lora_r=args["lora_r"], lora_alpha=2 * args["lora_r"], max_steps=args["steps"], save_every=0, dtype=args["dtype"],
    json=True,
))
from alignkit import console
console.set_quiet(True)
summary = run_ppo(cfg)
rows = read_metrics(Path(args["out"]) / "metrics.jsonl")
steps = [r["perf/step_seconds"] for r in rows]
print(json.dumps({"step_seconds": steps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rollout_seconds": [r["perf/rollout_seconds"] for r in rows],
                  "generate_seconds": [r["perf/generate_seconds"] for r in rows],
                  "update_seconds": [r["perf/update_seconds"] for r in rows],
                  "kl": [r["kl/ref"] for r in rows], "score": [r["reward/score"] for r in rows]}))
"""

TRL_CHILD = """
import json, resource, sys, time, tempfile, warnings
warnings.filterwarnings("ignore")
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer
args = json.loads(sys.argv[1])
torch.manual_seed(0)
model_dir = args["model_dir"]
tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
assert tok.pad_token_id != tok.eos_token_id
prompts = [json.loads(line)["prompt"] for line in open(args["prompts"])]
ids = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
       for p in prompts]
dataset = Dataset.from_dict({"input_ids": [tok(t, add_special_tokens=False)["input_ids"] for t in ids]})
policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
value = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
reward = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
for m in (value, reward):
    m.config.pad_token_id = tok.pad_token_id
config = PPOConfig(
    output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args["batch"], gradient_accumulation_steps=1,
    num_mini_batches=1, num_ppo_epochs=1, response_length=args["new_tokens"], temperature=args["temperature"],
    total_episodes=args["batch"] * args["steps"], local_rollout_forward_batch_size=args["batch"],
    stop_token="eos", bf16=False, fp16=False, use_cpu=True, report_to="none", save_strategy="no",
    num_sample_generations=0, logging_steps=1, seed=0, disable_tqdm=True,
)
peft_config = LoraConfig(r=args["lora_r"], lora_alpha=2 * args["lora_r"], target_modules="all-linear",
                         lora_dropout=0.0, task_type="CAUSAL_LM")
marks = []
class Clock(TrainerCallback):
    def on_train_begin(self, *a, **k):
        marks.append(time.perf_counter())
    def on_step_end(self, *a, **k):
        marks.append(time.perf_counter())
trainer = PPOTrainer(args=config, processing_class=tok, model=policy, ref_model=None, reward_model=reward,
                     train_dataset=dataset, value_model=value, eval_dataset=dataset.select(range(args["batch"])),
                     peft_config=peft_config, callbacks=[Clock()])
trainer.train()
steps = [b - a for a, b in zip(marks, marks[1:])]
print(json.dumps({"step_seconds": steps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(python: str, code: str, args: dict, env: dict) -> dict:
    done = subprocess.run(
        [python, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env, timeout=1200
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed ({python}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="auto", help="alignkit's --dtype (TRL always runs fp32)")
    parser.add_argument("--skip-trl", action="store_true", help="only run alignkit (no ratios)")
    opts = parser.parse_args()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with tempfile.TemporaryDirectory(prefix="alignkit-bench-ppo-") as tmp:
        work = Path(tmp)
        paths = prepare(work)
        common = {**paths, "batch": BATCH, "new_tokens": NEW_TOKENS, "steps": STEPS, "lora_r": LORA_R,
                  "temperature": TEMPERATURE}  # fmt: skip
        log(f"alignkit ppo: {STEPS} steps of {BATCH} prompts x {NEW_TOKENS} tokens ...")
        ours = run_child(
            sys.executable, ALIGNKIT_CHILD, {**common, "out": str(work / "run"), "dtype": opts.dtype}, env
        )
        log(f"  step seconds {ours['step_seconds']}, peak RSS {ours['peak_rss_mb']:.0f} MiB")
        log(
            f"  rollout {ours['rollout_seconds']} (generate {ours['generate_seconds']}), update {ours['update_seconds']}"
        )
        result = {
            "benchmark": "ppo_vs_trl",
            "settings": {
                "prompts": PROMPTS,
                "batch": BATCH,
                "new_tokens": NEW_TOKENS,
                "ppo_epochs": 1,
                "lora_r": LORA_R,
                "steps": STEPS,
                "timed_steps": f"2-{STEPS}",
                "alignkit_dtype": opts.dtype,
                "trl_dtype": "fp32",
                "trl_gradient_checkpointing": True,
            },  # fmt: skip
            "alignkit_step_s": _mean(ours["step_seconds"][TIMED]),
            "alignkit_steps_s": ours["step_seconds"],
            "alignkit_peak_rss_mb": ours["peak_rss_mb"],
        }
        if not opts.skip_trl:
            python = ensure_trl_venv()
            log(f"TRL {TRL_VERSION} PPOTrainer: same job ...")
            trl = run_child(str(python), TRL_CHILD, common, env)
            log(f"  step seconds {trl['step_seconds']}, peak RSS {trl['peak_rss_mb']:.0f} MiB")
            result.update(
                {
                    "trl_step_s": _mean(trl["step_seconds"][TIMED]),
                    "trl_steps_s": trl["step_seconds"],
                    "trl_peak_rss_mb": trl["peak_rss_mb"],
                }
            )
            result["step_time_ratio"] = round(result["alignkit_step_s"] / result["trl_step_s"], 3)
            result["peak_rss_ratio"] = round(result["alignkit_peak_rss_mb"] / result["trl_peak_rss_mb"], 3)
            result["targets_met"] = result["step_time_ratio"] <= 0.35 and result["peak_rss_ratio"] <= 0.35
    print(json.dumps(result))


if __name__ == "__main__":
    main()
