"""Reward-model commands: `alignkit rm`, `alignkit eval rm`, `alignkit score` (`alignkit export`: cli/export.py)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.eval import eval_app
from alignkit.cli.options import config_command
from alignkit.evaluation.reward_model_config import EvalRMConfig, ScoreConfig
from alignkit.trainers.rm_config import RMConfig


@app.command("rm")
@config_command(RMConfig)
def rm_command(cfg: RMConfig) -> None:
    """Train a reward model on human preference pairs or rankings.

    A LoRA adapter plus a scalar head on the base model (or all weights with --no-lora) learns r(prompt, answer) with the Bradley-Terry loss -log σ(r_chosen - r_rejected - margin); a ranking of K answers trains on all its pairs from one forward pass per answer. Writes RUN/reward_model/ (adapter, head, tokenizer), metrics.jsonl, checkpoints/ and report.json; with --eval-data or --eval-split it ends with the `alignkit eval rm` numbers.

    Example:

        alignkit rm --data prefs.jsonl --eval-split 0.1 --max-steps 200 --output runs/rm
    """
    from alignkit.trainers.rm import run_rm

    summary = run_rm(cfg)
    if cfg.json:
        keys = ("steps", "train_seconds", "eval_accuracy", "tokens_per_s", "run", "reward_model", "merged")
        console.print_json({k: summary[k] for k in keys if k in summary})


@eval_app.command("rm")
@config_command(EvalRMConfig)
def eval_rm_command(cfg: EvalRMConfig) -> None:
    """Evaluate a reward model on held-out preference pairs or rankings.

    Reports accuracy (preferred answer scored higher; ties count half), the mean margin, accuracy by length difference (does it just prefer longer answers?), the correlation between score and answer length (a warning above 0.5) and calibration of σ(margin) in 10 bins with the expected calibration error.

    Example:

        alignkit eval rm --reward-model runs/rm --data heldout.jsonl --json
    """
    from alignkit.evaluation.reward_model import run_eval_rm
    from alignkit.reports.reward_model import length_warning, show_eval

    result = run_eval_rm(cfg)
    if cfg.json:
        length_warning(result)
        console.print_json(result)
    else:
        show_eval(result)


@app.command("score")
@config_command(ScoreConfig)
def score_command(cfg: ScoreConfig) -> None:
    """Score every answer of a data file with a reward model.

    Writes OUTPUT.jsonl: each record in TRL's conversational JSON plus `score` (records with one answer) or `scores` (pairs: [chosen, rejected]; rankings: in `responses` order). Answers longer than --max-length on their own get null; prompts are cut on the left.

    Example:

        alignkit score --reward-model runs/rm --data samples.jsonl --output scored.jsonl
    """
    from alignkit.evaluation.reward_model import run_score

    summary = run_score(cfg)
    console.info(f"scored {summary['scored']} of {summary['answers']} answers -> {summary['output']}")
    if cfg.json:
        console.print_json(summary)
