"""The demo's final comparison: base, best-of-n, DPO and PPO on held-out prompts, gold versus proxy.

Gold is the simulated annotator (`alignkit.feedback.judges.simulated`, the rule that labelled the training pairs);
proxy is the reward model trained on those labels. Win rates are against the base model's answers to the
same prompts, by the gold rule, ties half. KL: DPO and PPO estimated from samples by `alignkit eval
policy`; best-of-n the analytic bound log N - (N-1)/N (Stiennon et al. 2020); base 0.

A method "beats the base" only when its win rate is above 0.5 by more than two standard errors; the table
(`alignkit.reports.demo`) prints what was measured, including a method that does worse.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from alignkit import console
from alignkit.evaluation.compare import mean, stderr, win_from_scores

if TYPE_CHECKING:
    from alignkit.demo.layout import Layout


def _policy_eval(demo: Layout, run, name: str) -> dict[str, Any]:
    from alignkit.evaluation.policy import run_eval_policy
    from alignkit.evaluation.policy_config import EvalPolicyConfig

    c = demo.cfg
    cfg = EvalPolicyConfig(
        policy=str(run),
        prompts=str(demo.eval_prompts),
        reward_model=[str(demo.rm)],
        judge="simulated",
        gold_judge="simulated",
        n_samples=c.eval_samples,
        max_new_tokens=c.max_new_tokens,
        temperature=1.0,
        seed=c.seed + 1000,
        show=0,
        output=str(demo.out / f"eval_{name}.jsonl"),
        overwrite=True,
    )
    console.info(
        f"$ alignkit eval policy --policy {run} --prompts {demo.eval_prompts} --reward-model {demo.rm} "
        f"--judge simulated --gold-judge simulated --n-samples {c.eval_samples} --temperature 1.0"
    )
    return run_eval_policy(cfg)


def _row(
    method: str,
    wins: list[float] | None,
    gold: float | None,
    proxy: float | None,
    kl: float | None,
    length: float | None,
    kl_kind: str,
) -> dict[str, Any]:
    win = mean(wins) if wins else None
    err = stderr(wins) if wins else None
    if wins is None:
        verdict = "the baseline"
    elif win is not None and err is not None and win - 2 * err > 0.5:
        verdict = "beats base"
    elif win is not None and err is not None and win + 2 * err < 0.5:
        verdict = "worse than base"
    else:
        verdict = "no clear difference"
    return {
        "method": method,
        "win_rate": win,
        "win_rate_stderr": err,
        "gold": gold,
        "proxy": proxy,
        "kl": kl,
        "kl_kind": kl_kind,
        "mean_length": length,
        "verdict": verdict,
    }


def evaluate_methods(demo: Layout) -> dict[str, Any]:
    """Evaluate every method; returns {"methods": [...], "reward_model": {...}, "settings": {...}}."""
    dpo = _policy_eval(demo, demo.dpo, "dpo")
    ppo = _policy_eval(demo, demo.ppo, "ppo")

    # The base model's answers: the reference side of the DPO evaluation (same base, adapter off, same seed).
    base_lines = [json.loads(line) for line in (demo.out / "eval_dpo.jsonl").read_text().splitlines() if line]
    k = demo.cfg.eval_samples
    base_by_prompt: dict[str, list[str]] = {}
    for line in base_lines:
        base_by_prompt.setdefault(line["prompt"], []).append(line["reference"])
    rows = [
        _row(
            "base",
            None,
            dpo["gold"]["reference_mean"],
            dpo["proxy"]["reference_mean"],
            0.0,
            dpo["reference_stats"]["mean_length"],
            "none",
        ),
    ]

    rows.append(_best_of_n_row(demo, base_by_prompt))

    for name, res in (("dpo", dpo), ("ppo", ppo)):
        rows.append(
            _row(
                name,
                _wins(demo, name),
                res["gold"]["mean"],
                res["proxy"]["mean"],
                res["kl"],
                res["policy_stats"]["mean_length"],
                "sampled",
            )
        )
    rm_report = json.loads((demo.rm / "report.json").read_text())
    rm_eval = rm_report.get("eval") or {}
    return {
        "methods": rows,
        "reward_model": {
            "eval_accuracy": rm_report.get("eval_accuracy"),
            "eval_pairs": rm_eval.get("pairs"),
            "length_correlation": rm_eval.get("length_correlation"),
            "steps": rm_report.get("steps"),
        },
        "eval_prompts": len(base_by_prompt),
        "answers_per_prompt": k,
        "gold": "simulated annotator (alignkit.feedback.judges.simulated)",
        "proxy": str(demo.rm),
    }


def _best_of_n_row(demo: Layout, base_by_prompt: dict[str, list[str]]) -> dict[str, Any]:
    """Best-of-n: its chosen answer against each base answer to the same prompt."""
    from alignkit.feedback.judges.base import conversation_text
    from alignkit.feedback.judges.simulated import simulated_score
    from alignkit.losses.kl import best_of_n_kl_bound as kl_bound
    from alignkit.rewards.encoding import as_conversation

    k = demo.cfg.eval_samples
    bon_wins, bon_gold, bon_proxy, bon_length = [], [], [], []
    n = demo.cfg.best_of_n
    for raw in demo.bon.read_text().splitlines():
        line = json.loads(raw)
        prompt = conversation_text(as_conversation(line["prompt"]), "user")
        best = line["best"]
        gold = simulated_score(prompt, best)
        bon_gold.append(gold)
        bon_proxy.append(float(line["best_score"]))
        bon_length.append(float(line["candidates"][line["chosen_index"]].get("tokens", 0)))
        base = base_by_prompt.get(prompt, [])[:k]
        bon_wins += win_from_scores([gold] * len(base), [simulated_score(prompt, b) for b in base])
    return _row(
        f"best-of-{n}", bon_wins, mean(bon_gold), mean(bon_proxy), kl_bound(n), mean(bon_length), "bound"
    )


def _wins(demo: Layout, name: str) -> list[float]:
    """Per-answer gold wins of a policy over the base, from its evaluation file."""
    lines = [json.loads(x) for x in (demo.out / f"eval_{name}.jsonl").read_text().splitlines() if x]
    return win_from_scores([x["gold_policy"] for x in lines], [x["gold_reference"] for x in lines])
