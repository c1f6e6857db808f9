"""Options of `alignkit kto` (Kahneman-Tversky Optimization on TRL's KTOTrainer)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.config import CpuAttentionOption, TrainConfig
from alignkit.errors import ConfigError
from alignkit.trainers.dpo_config import validate_common

KTO_LOSSES = {
    "kto": "KTO's prospect-theoretic loss with a KL reference point [Ethayarajh et al. 2024, arXiv:2402.01306]",
    "apo_zero_unpaired": "anchored: raise desirable, lower undesirable likelihood, no KL term "
    "[D'Oosterlinck et al. 2024, arXiv:2408.06266]",
}


@dataclass
class KTOConfig(TrainConfig, CpuAttentionOption):
    """`alignkit kto`: learn from answers labelled desirable/undesirable (no pairs needed)."""

    loss: str = "kto"
    """kto: KTO's prospect-theoretic loss with a KL reference point [Ethayarajh et al. 2024, arXiv:2402.01306]; apo_zero_unpaired: anchored, raise desirable and lower undesirable likelihood, no KL term [D'Oosterlinck et al. 2024, arXiv:2408.06266]."""
    beta: float = 0.1
    """Strength of the pull towards the reference: implicit reward = beta * (log pi - log pi_ref)."""
    batch_size: int = 4
    """Examples per micro-batch (>= 2: KTO estimates its KL reference point within a micro-batch)."""
    grad_accum: int = 2
    """Micro-batches accumulated per optimizer step (effective batch = batch_size x grad_accum x processes)."""
    desirable_weight: float | None = None
    """Weight of desirable examples' losses (lambda_D). Default: balanced automatically, see docs/kto.md."""
    undesirable_weight: float | None = None
    """Weight of undesirable examples' losses (lambda_U). Default: balanced automatically, see docs/kto.md."""
    precompute_ref: bool = False
    """Compute the reference log-probs of every example once before training."""
    ref_model: str | None = None
    """A separate frozen reference model (same tokenizer as --model). Default: the base with the adapter off (LoRA), or a frozen copy of --model (--no-lora)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower. Off: the default model is small."""
    eval_batch_size: int = 8
    """Examples per forward pass during evaluation."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep (older ones are deleted)."""

    def validate(self) -> None:
        validate_common(self)
        if self.loss not in KTO_LOSSES:
            raise ConfigError(f"unknown --loss {self.loss!r}; choose from {', '.join(KTO_LOSSES)}")
        if self.beta <= 0:
            raise ConfigError(f"--beta must be > 0, got {self.beta}")
        if self.loss == "kto" and self.batch_size < 2:
            raise ConfigError(
                "--batch-size must be >= 2 for KTO: its KL reference point is estimated from mismatched "
                "(prompt, answer) pairs within a micro-batch"
            )
        for name in ("desirable_weight", "undesirable_weight"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.eval_batch_size < 2 and self.loss == "kto":
            raise ConfigError("--eval-batch-size must be >= 2 for KTO (the KL estimate needs 2 examples)")
