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
        _stats(cfg.stats, cfg.json)
        return
    from alignkit.feedback.label import run_label

    summary = run_label(cfg)
    if cfg.json:
        console.print_json(summary)


def _stats(path: str, as_json: bool) -> None:
    from alignkit.feedback.stats import label_stats

    stats, warning = label_stats(path)
    if warning:
        console.warn(warning)
    if as_json:
        console.print_json(stats)
        return
    bias = stats["position_bias"]
    rate = bias.get("first_position_rate", bias.get("first_shown_best_rate"))
    console.key_values(
        f"labels: {path}",
        [
            ("mode", stats["mode"]),
            ("rows", stats["rows"]),
            ("labels", stats["labels"]),
            ("ties", stats["ties"]),
            ("skips", stats["skips"]),
            ("undone", stats["undone"]),
            ("items", stats["items"]),
            (
                "first shown chosen" if stats["mode"] == "pair" else "first shown ranked best",
                "-"
                if rate is None
                else f"{rate:.3f} (chance {bias.get('expected', 0):.3f}, n={bias['decisions']})",
            ),
            (
                "swap consistency",
                "-" if stats["swap_consistency"] is None else f"{stats['swap_consistency']:.3f}",
            ),
            ("agreement", "-" if stats["agreement_overall"] is None else f"{stats['agreement_overall']:.3f}"),
        ],
    )
    rows = []
    for who, c in stats["annotators"].items():
        r = c.get("first_position_rate", c.get("first_shown_best_rate"))
        rows.append(
            [
                who,
                c["labels"],
                c["ties"],
                c["skips"],
                "-" if r is None else f"{r:.3f}",
                "-" if c.get("swap_consistency") is None else f"{c['swap_consistency']:.3f}",
            ]
        )
    console.table(
        "annotators",
        ["annotator", "labels", "ties", "skips", "first-position rate", "swap consistency"],
        rows,
    )
    if stats["agreement"]:
        console.table(
            "agreement where items overlap",
            ["annotators", "items", "agreement"],
            [
                [" / ".join(a["annotators"]), a["overlap"], f"{a['agreement']:.3f}"]
                for a in stats["agreement"]
            ],
        )


@app.command("judge")
@config_command(JudgeConfig)
def judge_command(cfg: JudgeConfig) -> None:
    """Label answer pairs with an AI judge (a local model or an OpenAI-compatible endpoint) into a label file.

    The judge reads a template stating one principle (helpful, harmless, honest, or your own text file) and names the better answer; a local model's decision comes from the log-probabilities of the answer names, not from generated text. --swap judges both orders and turns order-dependent verdicts into ties (or drops them). Output is resumable, and readable by rm, dpo and kto like the output of alignkit label. An HTTP judge reads its key from ALIGNKIT_JUDGE_API_KEY; it retries 429/5xx/connection errors with backoff and stops with exit status 1 when the endpoint keeps failing (2 for a bad URL, key or request).

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
