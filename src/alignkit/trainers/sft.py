"""`alignkit sft`: supervised fine-tuning with TRL's SFTTrainer, loss on the answer tokens only.

The records become TRL's conversational *prompt-completion* format (prompt messages, completion messages),
and TRL's ``completion_only_loss`` masks every prompt token (label -100), so the loss is

    loss = -(1 / N) * sum over answer tokens t of log pi(y_t | x, y_<t)      (N = answer tokens in the batch)

Why not ``assistant_only_loss``: it needs ``{% generation %}`` markers in the chat template, which SmolLM2's
ChatML template lacks (TRL would swap in its own training template). Prompt-completion works with any
template: TRL tokenizes the prompt (with the generation prompt) and prompt + completion, and the completion
starts where the two diverge. Preference data trains on the chosen answers (`Record.to_sft`).
"""

from __future__ import annotations

import math
from typing import Any

from alignkit.trainers.sft_config import SFTConfig
from alignkit.trainers.trl.callback import RunCallback
from alignkit.trainers.trl.run import build_trainer, conclude, eval_args, train, training_args
from alignkit.trainers.trl.setup import open_run, prepare

COMMAND = "sft"


def run_sft(cfg: SFTConfig) -> dict[str, Any]:
    """Fine-tune as configured; write the run dir; return (and print) the report."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    setup = prepare(cfg, "sft", needs_reference=False, title=f"alignkit sft ({cfg.loss})")
    run = open_run(COMMAND, cfg, setup.procs)
    args = training_args(
        TRLSFTConfig,
        cfg,
        run,
        setup.precision,
        loss_type=cfg.loss,
        completion_only_loss=True,
        assistant_only_loss=False,
        packing=False,
        **eval_args(cfg, bool(setup.eval)),
    )
    callback = RunCallback(run, setup.procs, cfg.keep_checkpoints)
    trainer = build_trainer(SFTTrainer, setup, args, callback, "sft")
    result = train(trainer, callback, run, cfg, COMMAND)
    final = trainer.evaluate() if setup.eval else {}

    def fields() -> dict[str, Any]:
        eval_loss = final.get("eval_loss")
        return {
            "eval_loss": eval_loss,
            "eval_examples": len(setup.eval),
            "eval_perplexity": math.exp(eval_loss) if eval_loss is not None and eval_loss < 50 else None,
            "eval_token_accuracy": final.get("eval_mean_token_accuracy"),
            "train_examples": len(setup.train),
            "loss": cfg.loss,
            "eval_history": callback.eval_rows[:-1] if setup.eval else [],
        }

    return conclude(COMMAND, trainer, callback, setup, run, cfg, result, fields)
