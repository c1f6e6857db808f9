"""`alignkit data ...`: look at data before training on it (`data inspect`), write the demo data (`data demo`)
and the instruction-following training prompts (`data instructions`)."""

from __future__ import annotations

import typer

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.config import InspectConfig
from alignkit.data.instruction_prompts.build import InstructionPromptsConfig
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


@data_app.command("instructions")
@config_command(InstructionPromptsConfig)
def instructions_data_command(cfg: InstructionPromptsConfig) -> None:
    """Write training prompts for instruction following: tasks written for alignkit, each with 1 to 3 instructions of IFEval's 25 types attached (never IFEval's own prompts).

    Each line has IFEval's columns (key, prompt, instruction_id_list, kwargs), so `alignkit grpo --reward-fn ifeval` scores answers to it; the same --count and --seed always write the same file (docs/data.md).

    Example:

        alignkit data instructions --output recipes/data/ifeval_train.jsonl --count 2000 --seed 0
    """
    from alignkit.data.instruction_prompts import write_instruction_prompts

    path, records = write_instruction_prompts(cfg)
    instructions = sum(len(r["instruction_id_list"]) for r in records)
    kinds = len({i for r in records for i in r["instruction_id_list"]})
    console.info(f"wrote {len(records)} prompts ({instructions} instructions of {kinds} types) to {path}")
