"""`alignkit dpo`, `alignkit kto`, `alignkit sft`: TRL-backed trainers (no logic here)."""

from __future__ import annotations

from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.trainers.dpo_config import DPOConfig, loss_lines
from alignkit.trainers.kto_config import KTOConfig
from alignkit.trainers.sft_config import SFTConfig


@app.command("dpo")
@config_command(DPOConfig)
def dpo_command(cfg: DPOConfig) -> None:
    """Direct Preference Optimization: train the policy on preference pairs, no reward model."""
    from alignkit.trainers.dpo import run_dpo

    run_dpo(cfg)


dpo_command.__doc__ = "\n\n".join(
    [
        "Direct Preference Optimization: train the policy on preference pairs, no reward model.",
        "TRL's DPOTrainer on our loaders (any preference or ranking format; identical pairs are skipped and "
        "counted). With LoRA (the default) the reference is the base model with the adapter disabled; "
        "--no-lora keeps a frozen copy (or --ref-model). At the end: held-out accuracy by implicit reward "
        "(ties count half), reward margin, KL to the reference, log-prob trends. Writes a LoRA adapter "
        "(plain peft loads it), report.json and metrics.jsonl.",
        "Loss types (--loss):\n\n\b\n" + "\n".join(f"  {line}" for line in loss_lines()),
        "Example:\n\n    alignkit dpo --data prefs.jsonl --eval-split 0.1 --max-steps 200 --json",
    ]
)


@app.command("kto")
@config_command(KTOConfig)
def kto_command(cfg: KTOConfig) -> None:
    """Kahneman-Tversky Optimization: learn from answers labelled desirable or undesirable.

    Unpaired data with a boolean `label` (true = desirable), or preference pairs split automatically into
    one desirable and one undesirable example. Imbalanced classes are reweighted to the KTO paper's
    recommended range (lambda_D n_D / lambda_U n_U in [1, 4/3]) and the log says so. Data with only one
    class trains with a warning: there is nothing to contrast with.

    Example:

        alignkit kto --data feedback.jsonl --eval-split 0.1 --max-steps 200 --json
    """
    from alignkit.trainers.kto import run_kto

    run_kto(cfg)


@app.command("sft")
@config_command(SFTConfig)
def sft_command(cfg: SFTConfig) -> None:
    """Supervised fine-tuning (instruction tuning) with the loss on the answer tokens only.

    Prompt/answer or conversational data (a preference file trains on its chosen answers). The prompt's
    tokens are masked out of the loss (TRL's prompt-completion format, completion_only_loss). Writes a LoRA
    adapter that `alignkit dpo --model RUN` can start from.

    Example:

        alignkit sft --data instructions.jsonl --eval-split 0.05 --epochs 1 --json
    """
    from alignkit.trainers.sft import run_sft

    run_sft(cfg)
