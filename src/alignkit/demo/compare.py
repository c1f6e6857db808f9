"""The demo's final comparison: base, best-of-n, DPO, PPO and GRPO on held-out prompts, gold versus proxy.

Gold is the simulated annotator (`alignkit.feedback.judges.simulated`, the rule that labelled the training pairs);
proxy is the reward model trained on those labels. Win rates are against the base model's answers to the
same prompts, by the gold rule, ties half: each method answer against each base answer to its prompt,
averaged per prompt, with the standard error over prompts. KL: DPO, PPO and GRPO estimated from samples by `alignkit eval
policy`; best-of-n the analytic bound log N - (N-1)/N (Stiennon et al. 2020); base 0.

A method "beats the base" only when its win rate is above 0.5 by more than two standard errors; the table
(`alignkit.reports.demo`) prints what was measured, including a method that does worse.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from alignkit import console
from alignkit.demo.data import is_tie
from alignkit.evaluation.compare import mean, stderr, win_from_scores

if TYPE_CHECKING:
    from alignkit.demo.layout import Layout


def _policy_eval(demo: Layout, run, name: str, reference_answers: dict) -> dict[str, Any]:
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
        temperature=c.temperature,
        seed=c.seed + 1000,
        show=0,
        output=str(demo.out / f"eval_{name}.jsonl"),
        overwrite=True,
    )
    console.info(
        f"$ alignkit eval policy --policy {run} --prompts {demo.eval_prompts} --reward-model {demo.rm} "
        f"--judge simulated --gold-judge simulated --n-samples {c.eval_samples} --temperature {c.temperature}"
    )
    return run_eval_policy(cfg, reference_answers)


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


POLICIES = ("dpo", "ppo", "grpo")  # trained runs, evaluated by `alignkit eval policy`


def evaluate_methods(demo: Layout) -> dict[str, Any]:
    """Evaluate every method; returns {"methods": [...], "reward_model": {...}, "settings": {...}}."""
    # The base model's answers are the reference side of each evaluation (the base with the adapter off), with
    # the same prompts, settings and seed for every method: sampled once and reused.
    reference_answers: dict = {}
    evals = {name: _policy_eval(demo, getattr(demo, name), name, reference_answers) for name in POLICIES}
    first = evals[POLICIES[0]]

    base_gold = _gold_by_prompt(demo, POLICIES[0], "reference")
    rows = [
        _row(
            "base",
            None,
            first["gold"]["reference_mean"],
            first["proxy"]["reference_mean"],
            0.0,
            first["reference_stats"]["mean_length"],
            "none",
        ),
        _best_of_n_row(demo, base_gold),
    ]
    for name, res in evals.items():
        rows.append(
            _row(
                name,
                _cross_wins(_gold_by_prompt(demo, name, "policy"), base_gold),
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
            "eval_ties": _ties(demo.labels_eval),  # held-out pairs the annotator called a tie: not scored
            "steps": rm_report.get("steps"),
        },
        "eval_prompts": len(base_gold),
        "answers_per_prompt": demo.cfg.eval_samples,
        "gold": "simulated annotator (alignkit.feedback.judges.simulated)",
        "proxy": str(demo.rm),
    }


def _gold_by_prompt(demo: Layout, name: str, side: str) -> dict[str, list[float]]:
    """Gold scores of one side ("policy" or "reference") of an evaluation file, grouped by prompt."""
    by_prompt: dict[str, list[float]] = {}
    for raw in (demo.out / f"eval_{name}.jsonl").read_text().splitlines():
        if raw:
            line = json.loads(raw)
            by_prompt.setdefault(line["prompt"], []).append(float(line[f"gold_{side}"]))
    return by_prompt


def _cross_wins(method: dict[str, list[float]], base: dict[str, list[float]]) -> list[float]:
    """One win rate per held-out prompt: the mean over every (method answer, base answer) pair of that prompt.

    Comparing each answer with every base answer uses all the samples (a prompt with 2 + 2 answers gives 4
    comparisons); averaging them per prompt first makes the prompt the unit, so the standard error over
    prompts (`_row`) accounts for answers to one prompt not being independent.
    """
    wins = []
    for prompt, scores in method.items():
        others = base.get(prompt, [])
        if scores and others:
            wins.append(mean(win_from_scores(*zip(*[(a, b) for a in scores for b in others], strict=True))))
    return wins


def _best_of_n_row(demo: Layout, base_gold: dict[str, list[float]]) -> dict[str, Any]:
    """Best-of-n: its chosen answer against each base answer to the same prompt."""
    from alignkit.feedback.judges.base import conversation_text
    from alignkit.feedback.judges.simulated import simulated_score
    from alignkit.losses.kl import best_of_n_kl_bound as kl_bound
    from alignkit.rewards.encoding import as_conversation

    chosen: dict[str, list[float]] = {}
    bon_proxy, bon_length = [], []
    n = demo.cfg.best_of_n
    for raw in demo.bon.read_text().splitlines():
        line = json.loads(raw)
        prompt = conversation_text(as_conversation(line["prompt"]), "user")
        chosen.setdefault(prompt, []).append(simulated_score(prompt, line["best"]))
        bon_proxy.append(float(line["best_score"]))
        bon_length.append(float(line["candidates"][line["chosen_index"]].get("tokens", 0)))
    gold = [g for scores in chosen.values() for g in scores]
    return _row(
        f"best-of-{n}",
        _cross_wins(chosen, base_gold),
        mean(gold),
        mean(bon_proxy),
        kl_bound(n),
        mean(bon_length),
        "bound",
    )


def _ties(path) -> int:
    """Tie events in a label file."""
    return sum(1 for raw in path.read_text().splitlines() if raw.strip() and is_tie(json.loads(raw)))
