"""`alignkit label` (people: terminal or --web), `label stats`, `label aggregate`, and `alignkit judge` (AI
feedback): preferences into one label file, and what it holds."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.feedback.config import JudgeConfig, LabelAggregateConfig, LabelConfig, LabelStatsConfig

label_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)  # help: label_command's docstring
app.add_typer(label_app, name="label")


def _unless_subcommand(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` as the group's callback: it runs only when no sub-command (stats, aggregate) was named."""
    signature = inspect.signature(command)
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)

    @functools.wraps(command)
    def callback(ctx: typer.Context, **kwargs: Any) -> Any:
        if ctx.invoked_subcommand is None:
            return command(**kwargs)
        return None

    callback.__signature__ = signature.replace(parameters=[ctx, *signature.parameters.values()])  # type: ignore[attr-defined]
    callback.__annotations__ = {"ctx": typer.Context, **command.__annotations__}
    del callback.__wrapped__  # typer must see this signature
    return callback


@label_app.callback()
@_unless_subcommand
@config_command(LabelConfig)
def label_command(cfg: LabelConfig) -> None:
    """Compare or rank answers in the terminal, or as a team in the browser (--web); every judgement is saved at once, and a restart resumes.

    Pair mode shows a prompt and two answers (side by side on wide terminals): 1/2 choose, t tie, s skip, u undo the last, q quit, arrows scroll. Rank mode shows all answers: type their numbers best first (3 1 2 4, or 1=2 for a tie) and Enter. Answer order is shuffled per item (seeded) and recorded. The label file is read directly by rm, dpo and kto.

    --web serves a page on 127.0.0.1 (another --host prints a warning) and prints one URL per annotator, each with a secret token (kept in LABELS.web.json, mode 600, so a restart gives the same URLs). Each item goes to --overlap annotators, in an order shuffled per annotator; the same keys, plus c for can't judge. Ctrl-C stops the server; every judgement the page confirmed is already on disk.

    `alignkit label stats LABELS` reports counts, speed, agreement (Cohen's kappa, Krippendorff's alpha) and position bias; `alignkit label aggregate LABELS --output prefs.jsonl` writes the majority vote as a preference file. --stats LABELS is the same as `label stats`.

    Example:

        alignkit label --data samples.jsonl --output labels.jsonl --web --annotators ana,ben,cleo --overlap 2
    """
    if cfg.stats is not None:
        _show_stats(cfg.stats, cfg.json)
        return
    if cfg.web:
        from alignkit.feedback.web.server import run_label_web
        from alignkit.reports.labels import show_web_start, show_web_stopped

        summary = run_label_web(cfg, show_web_start)
        show_web_stopped(summary)
    else:
        from alignkit.feedback.label import run_label

        summary = run_label(cfg)
    if cfg.json:
        console.print_json(summary)


def _show_stats(path: str, as_json: bool) -> None:
    from alignkit.feedback.stats import label_stats
    from alignkit.reports.labels import show_label_stats

    stats = label_stats(path)
    if as_json:
        console.print_json(stats)
    else:
        show_label_stats(path, stats)


@label_app.command("stats")
@config_command(LabelStatsConfig, positional=("labels",))
def label_stats_command(cfg: LabelStatsConfig) -> None:
    """Report on a label file: counts and speed per annotator, agreement, agreement with the majority, position bias.

    Agreement is measured where annotators judged the same items: Cohen's kappa for every two annotators and Krippendorff's alpha (nominal) over everyone, both on the same units (an item in pair mode, each pair of answers in rank mode; the outcome is which answer won, or a tie). Agreement with the majority compares each annotator with the majority of the others. Position bias is the rate at which the answer shown first was chosen. Undone judgements do not count; can't-judge and skips are counted apart.

    Example:

        alignkit label stats labels.jsonl --json
    """
    _show_stats(cfg.labels, cfg.json)


@label_app.command("aggregate")
@config_command(LabelAggregateConfig, positional=("labels",))
def label_aggregate_command(cfg: LabelAggregateConfig) -> None:
    """Write the majority vote of a label file as a preference file (prompt, chosen, rejected) that rm, dpo and kto read as it is.

    Each item's effective judgements (one per annotator, undone ones left out) vote: an answer wins when it has more votes than the other answer and than tie. Items whose vote is a tie, split, or only can't-judge/skips are dropped and counted; --min-votes drops items judged by fewer annotators. Rank-mode files vote per pair of answers. The file is written atomically.

    Example:

        alignkit label aggregate labels.jsonl --output prefs.jsonl
    """
    from alignkit.feedback.aggregate import aggregate_labels
    from alignkit.reports.labels import show_aggregate

    summary = aggregate_labels(cfg)
    if cfg.json:
        console.print_json(summary)
    else:
        show_aggregate(summary)


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
