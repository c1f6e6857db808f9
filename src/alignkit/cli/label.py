"""`alignkit label` (people) and `alignkit judge` (AI feedback): preferences into one label file."""

from __future__ import annotations

import typer

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.feedback.config import JudgeConfig, LabelConfig


@app.command("label")
@config_command(LabelConfig)
def label_command(cfg: LabelConfig) -> None:
    """Compare or rank answers in the terminal; every judgement is saved at once, and a restart resumes.

    Pair mode shows a prompt and two answers (side by side on wide terminals): 1/2 choose, t tie, s skip, u undo the last, q quit, arrows scroll. Rank mode shows all answers: type their numbers best first (3 1 2 4, or 1=2 for a tie) and Enter. Answer order is shuffled per item (seeded) and recorded. The label file is read directly by rm, dpo and kto. --stats LABELS.jsonl reports counts, ties, agreement between annotators and position bias instead.

    Example:

        alignkit label --data samples.jsonl --output labels.jsonl --annotator ana
    """
    if cfg.stats is not None:
        from alignkit.feedback.stats import label_stats
        from alignkit.reports.labels import show_label_stats

        stats = label_stats(cfg.stats)
        if cfg.json:
            console.print_json(stats)
        else:
            show_label_stats(cfg.stats, stats)
        return
    from alignkit.feedback.label import run_label

    summary = run_label(cfg)
    if cfg.json:
        console.print_json(summary)


@app.command("judge")
@config_command(JudgeConfig)
def judge_command(cfg: JudgeConfig) -> None:
    """Label answer pairs with an AI judge (a local model or an OpenAI-compatible endpoint) into a label file.

    The judge reads a template stating one principle (helpful, harmless, honest, or your own text file) and names the better answer; a local model's decision comes from the log-probabilities of the answer names, not from generated text. --swap judges both orders and turns order-dependent verdicts into ties (or drops them). Output is resumable, and readable by rm, dpo and kto like the output of alignkit label. An HTTP judge reads its key from ALIGNKIT_JUDGE_API_KEY, else OPENAI_API_KEY; it retries 429/5xx/connection errors with backoff and stops with exit status 1 when the endpoint keeps failing (2 for a bad URL, key or request).

    Example:

        alignkit judge --data samples.jsonl --output ai_labels.jsonl --template harmless --swap
    """
    from alignkit.feedback.judge import run_judge
    from alignkit.feedback.judges.base import JudgeEndpointError

    try:
        summary = run_judge(cfg)
    except JudgeEndpointError as e:
        console.error(str(e))
        raise typer.Exit(1) from None
    if cfg.json:
        console.print_json(summary)
    else:
        console.key_values(f"judge: {summary['judge']} -> {summary['output']}", list(summary.items()))
