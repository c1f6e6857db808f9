"""`alignkit data ...`: look at data before training on it (`data inspect`), write the demo data (`data demo`)."""

from __future__ import annotations

import typer

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.config import InspectConfig
from alignkit.demo.config import DemoDataConfig

data_app = typer.Typer(help="Inspect and convert data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("inspect")
@config_command(InspectConfig, positional=("path",))
def inspect_command(cfg: InspectConfig) -> None:
    """Detect a data file's format, parse every record and report counts, problems and lengths.

    Reports the format, the kind (preference, ranking, unpaired, prompt, sft), how many records loaded, which were skipped and why (with FILE:LINE), prompt/answer length statistics in tokens, and a sample record.

    Example:

        alignkit data inspect ../shared/data/preference/hh-rlhf-harmless-dev.jsonl --json
    """
    from alignkit.data.inspect import inspect_data
    from alignkit.reports.data import show_inspect

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
    show_inspect(report)


@data_app.command("demo")
@config_command(DemoDataConfig)
def demo_data_command(cfg: DemoDataConfig) -> None:
    """Write the small demo data set shipped with alignkit (preference pairs and prompts we wrote).

    Example:

        alignkit data demo --output runs/demo-data
    """
    from alignkit.demo.data import write_demo_data
    from alignkit.reports.data import show_demo_data

    show_demo_data(write_demo_data(cfg))
