"""Best-of-n scoring with and without the shared prompt: the reward model's forward of N candidates per prompt.

Workload: the embedded default SmolLM2-135M-Instruct samples N candidates (64 new tokens, temperature 1,
seed 0) for 16 prompts of each of two prompt sets from ``../shared/data``: short single-turn Koala questions
and the multi-turn conversations that open hh-rlhf-helpful-dev pairs (longer prompts). A reward model on the
same base (a random LoRA adapter, rank 16, and a scalar head; the scores do not matter for speed, only the
shapes) then scores every candidate through `best_of_n.score_generations`, the path of
``alignkit sample --best-of-n``:

- shared: each prompt's candidates are one group; the prompt is forwarded once per packed row
  (`RewardModel.score_groups`);
- unshared: the same reward model behind a scorer that hides `score_groups`, so every candidate is its own
  row, prompt included (what alignkit did before, and what a plain sequence classifier does).

Both score the same candidates in the same precision (bf16 weights, the reward model's autocast); each is
timed as the best of three runs, and the scores must agree (checked, max difference printed). The last line
is one JSON object: ``scoring_speedup_<set>_n<N>`` (unshared seconds / shared seconds) and candidates/s.

    flock /tmp/alignkit-cpu.lock .venv/bin/python benchmarks/best_of_n_scoring.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json_line  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PROMPT_SETS = {
    "koala": SHARED / "prompts" / "koala_test_set.jsonl",
    "hh_helpful": SHARED / "preference" / "hh-rlhf-helpful-dev.jsonl",
}


class Unshared:
    """The same reward model without `score_groups`: one row per candidate."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.tokenizer = scorer.tokenizer

    def score_ids(self, input_ids, attention_mask):
        return self.scorer.score_ids(input_ids, attention_mask)


def reward_model(base, tokenizer):
    from alignkit.models import heads, lora
    from alignkit.models.device import resolve_precision
    from alignkit.rewards.model import RewardModel

    torch.manual_seed(0)
    model = lora.add_adapter(base, "reward", lora.LoraSettings(r=16, alpha=32))
    with torch.no_grad():
        for p in lora.adapter_parameters(model, "reward"):
            p.normal_(0, 0.02)
    head = heads.ScalarHead(base.config.hidden_size, init="reward")
    return RewardModel(model, head, tokenizer, resolve_precision("bf16", lora=True), 1024, adapter="reward")


def prompts_of(name: str, count: int):
    from alignkit.data.load import load_records

    records = load_records(PROMPT_SETS[name], limit=count).records
    return [r.prompt for r in records]


def best_of(runs: int, fn, *args):
    """(best wall time of ``runs`` calls of fn(*args), the last result)."""
    best, out = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from alignkit.models import default, registry
    from alignkit.rewards.ensemble import ModelScorer, RewardMember, RewardSet
    from alignkit.sampling.best_of_n import score_generations
    from alignkit.sampling.generate import generate

    print(f"machine: {machine()}", flush=True)
    name = default.DEFAULT_MODEL
    tokenizer = registry.load_tokenizer(name)
    policy = registry.load_model(name, dtype="bf16", tokenizer=tokenizer)
    rm = reward_model(registry.load_model(name, dtype="bf16", tokenizer=tokenizer), tokenizer)
    scorer = ModelScorer(rm)
    assert scorer.shares_prompt, "the reward model cannot share prompts here"
    shared = RewardSet([RewardMember("rm", scorer)])
    unshared = RewardSet([RewardMember("rm", Unshared(scorer))])

    result: dict[str, float] = {}
    for set_name in PROMPT_SETS:
        prompts = prompts_of(set_name, args.prompts)
        for n in args.n:
            batch = generate(policy, tokenizer, prompts, n=n, max_new_tokens=args.new_tokens, seed=0)
            gens = batch.generations
            prompt_tokens = sum(len(g.prompt_ids) for g in gens) / len(gens)
            answer_tokens = sum(len(g.response_ids) for g in gens) / len(gens)
            t_shared, s_shared = best_of(args.runs, score_generations, shared, tokenizer, prompts, gens)
            t_flat, s_flat = best_of(args.runs, score_generations, unshared, tokenizer, prompts, gens)
            gap = float((s_shared.combined - s_flat.combined).abs().max())
            scale = float(s_flat.combined.abs().max())
            assert gap <= 0.05 * max(scale, 1.0), f"shared and unshared scores differ by {gap}"
            key = f"{set_name}_n{n}"
            print(
                f"{key}: {len(gens)} candidates, prompt {prompt_tokens:.0f} + answer {answer_tokens:.0f} tokens "
                f"on average; unshared {t_flat:.2f} s ({len(gens) / t_flat:.1f} cand/s), shared {t_shared:.2f} s "
                f"({len(gens) / t_shared:.1f} cand/s): {t_flat / t_shared:.2f}x; max score difference {gap:.4f} "
                f"(bf16; scores up to {scale:.2f})",
                flush=True,
            )
            result[f"scoring_speedup_{key}"] = t_flat / t_shared
            result[f"shared_candidates_per_s_{key}"] = len(gens) / t_shared
            result[f"unshared_candidates_per_s_{key}"] = len(gens) / t_flat
            result[f"prompt_tokens_{key}"] = prompt_tokens
            result[f"answer_tokens_{key}"] = answer_tokens
    print_json_line(result)


if __name__ == "__main__":
    main()
