"""`alignkit data ...`: look at data before training on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.config import InspectConfig

data_app = typer.Typer(help="Inspect and convert data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

MAX_REASONS_SHOWN = 20


@data_app.command("inspect")
@config_command(InspectConfig, positional=("path",))
def inspect_command(cfg: InspectConfig) -> None:
    """Detect a data file's format, parse every record and report counts, problems and lengths.

    Reports the format, the kind (preference, ranking, unpaired, prompt, sft), how many records loaded, which were skipped and why (with FILE:LINE), prompt/answer length statistics in tokens, and a sample record.

    Example:

        alignkit data inspect ../shared/data/preference/hh-rlhf-harmless-dev.jsonl --json
    """
    from alignkit.data.inspect import inspect_data

    tokenizer = None
    if cfg.tokenizer != "words":
        from alignkit.models.registry import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
    report = inspect_data(
        cfg.path, kind=cfg.kind, format=cfg.format, skip_invalid=not cfg.strict, tokenizer=tokenizer
    )
    if cfg.json:
        console.print_json(report)
        return
    _show(report)


def _show(report: dict) -> None:
    unit = report.get("length_unit", "tokens")
    console.key_values(
        f"data: {report['path']}",
        [
            ("format", report["format"]),
            ("kind", report["kind"]),
            ("records", report["records"]),
            ("skipped", report["skipped"]),
        ]
        + [(k, report[k]) for k in ("pairs", "rankings") if k in report],
    )
    rows = []
    for name, stats in report.get("lengths", {}).items():
        if stats:
            rows.append(
                [
                    name.replace("_tokens", f" ({unit})"),
                    *(stats.get(k) for k in ("min", "mean", "p50", "p95", "max")),
                ]
            )
    if rows:
        console.table("lengths", ["", "min", "mean", "p50", "p95", "max"], rows)
    reasons = report.get("skipped_reasons", [])
    if reasons:
        shown = reasons[:MAX_REASONS_SHOWN]
        console.table("skipped records", ["where", "why"], [[r["source"], r["reason"]] for r in shown])
        if len(reasons) > len(shown):
            console.info(f"... and {len(reasons) - len(shown)} more (use --json for all)")
    for note in report.get("notes", []):
        console.warn(note)
    if report.get("sample") is not None:
        import json

        console.info("sample record:")
        console.info(json.dumps(report["sample"], indent=2, ensure_ascii=False))


@data_app.command("demo")
def demo_data_command(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder to write demo_pairs.jsonl and demo_prompts.jsonl into."),
    ] = Path("runs/demo-data"),
) -> None:
    """Write the small demo data set shipped with alignkit (preference pairs and prompts we wrote).

    Example:

        alignkit data demo --output runs/demo-data
    """
    from alignkit.demo.data import write_demo_pairs, write_demo_prompts

    pairs = write_demo_pairs(output / "demo_pairs.jsonl")
    prompts = write_demo_prompts(output / "demo_prompts.jsonl")
    console.info(f"wrote {pairs} and {prompts}")
