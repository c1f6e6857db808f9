"""Options of `alignkit sft` (instruction tuning on TRL's SFTTrainer)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.config import CpuAttentionOption, TrainConfig
from alignkit.errors import ConfigError
from alignkit.trainers.dpo_config import validate_common

SFT_LOSSES = ("nll", "dft")


@dataclass
class SFTConfig(TrainConfig, CpuAttentionOption):
    """`alignkit sft`: supervised fine-tuning on prompt/answer or conversational data (loss on answers only)."""

    loss: str = "nll"
    """nll: negative log-likelihood of the answer tokens; dft: Dynamic Fine-Tuning, each token's NLL scaled by its probability [Wu et al. 2025, arXiv:2508.05629]."""
    batch_size: int = 2
    """Sequences per micro-batch; small micro-batches pad least and keep activations small (fastest on a CPU)."""
    grad_accum: int = 4
    """Micro-batches accumulated per optimizer step (effective batch = batch_size x grad_accum x processes)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower. Off: the default model is small."""
    group_by_length: bool = True
    """Batch examples of similar length together (shuffled in groups of 50 batches): much less padding, so faster and leaner."""
    eval_batch_size: int = 8
    """Sequences per forward pass during evaluation."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep (older ones are deleted)."""

    def validate(self) -> None:
        validate_common(self)
        if self.loss not in SFT_LOSSES:
            raise ConfigError(f"unknown --loss {self.loss!r}; choose from {', '.join(SFT_LOSSES)}")
        if self.eval_batch_size < 1:
            raise ConfigError(f"--eval-batch-size must be >= 1, got {self.eval_batch_size}")
