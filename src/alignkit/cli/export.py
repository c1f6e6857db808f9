"""`alignkit export`: any run -> a standalone transformers checkpoint (no logic here: see alignkit/export.py)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.export import ExportConfig


@app.command("export")
@config_command(ExportConfig, positional=("run",))
def export_command(cfg: ExportConfig) -> None:
    """Export a trained model (rm, dpo, kto, sft or ppo run) as a plain transformers checkpoint.

    What RUN holds decides what is written, in safetensors with the tokenizer, for use without alignkit. A reward model (`alignkit rm`): the LoRA adapter merged into a copy of the base and the reward head as the classifier's score layer, an AutoModelForSequenceClassification (one label) that scores exactly like the reward model. A policy adapter (dpo, kto, sft, ppo): the adapter merged into the base in fp32, an AutoModelForCausalLM with the adapter model's logits. Full weights (--no-lora runs): the checkpoint copied, nothing to merge. A directory that is already a standalone checkpoint is refused. See docs/export.md.

    Example:

        alignkit export runs/dpo --output exported-dpo
    """
    from alignkit.export import export

    summary = export(cfg.run, cfg.output, overwrite=cfg.overwrite)
    console.info(f"exported {cfg.run} ({summary['how']}, {summary['loads_with']}) -> {summary['output']}")
    if cfg.json:
        console.print_json(summary)
