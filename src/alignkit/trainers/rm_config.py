"""Options of `alignkit rm` (reward-model training); the common trainer options come from `TrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.config import CpuAttentionOption, TrainConfig
from alignkit.errors import ConfigError


@dataclass
class RMConfig(TrainConfig, CpuAttentionOption):
    """`alignkit rm`: train a scalar reward model on preference pairs and K-way rankings."""

    center_rewards: float = 0.01
    """Weight of the reward-centering term mean((r_chosen + r_rejected)^2) (Eisenstein et al. 2023); 0 turns it off."""
    gradient_checkpointing: bool = False
    """Recompute every decoder layer in the backward pass: least memory, ~20% more compute on every batch."""
    activation_memory_gb: float = 0.5
    """Memory for the activations of one micro-batch; longer batches recompute (checkpoint) just enough layers to fit. 0: no limit."""
    release_memory: bool = True
    """Return the heap's free memory to the OS after every step (glibc malloc_trim): resident memory follows each step's own peak instead of growing with every batch shape seen, for ~7% more step time."""
    compile: bool = True
    """Compile the decoder layers for training (torch.compile): faster steps after a one-off compile of tens of seconds in the first steps. --no-compile for short runs."""
    share_prompt: bool = True
    """Forward a comparison's prompt once and its answers after it (block attention mask): same scores, ~35% fewer tokens on multi-turn prompts."""
    group_by_length: bool = True
    """Batch pairs of similar length together (shuffled in groups of ~50 batches) to waste little padding."""
    eval_batch_size: int = 16
    """Answers scored per forward pass during evaluation."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep (older ones are deleted)."""

    def validate(self) -> None:
        checks = [
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}"),
            (self.max_length >= 8, f"--max-length must be >= 8 tokens, got {self.max_length}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}"),
            (
                self.max_steps == -1 or self.max_steps >= 1,
                f"--max-steps must be -1 or >= 1, got {self.max_steps}",
            ),
            (self.max_steps != -1 or self.epochs > 0, f"--epochs must be > 0, got {self.epochs}"),
            (self.center_rewards >= 0, f"--center-rewards must be >= 0, got {self.center_rewards}"),
            (0 <= self.eval_split < 1, f"--eval-split must be in [0, 1), got {self.eval_split}"),
            (self.eval_batch_size >= 1, f"--eval-batch-size must be >= 1, got {self.eval_batch_size}"),
            (self.lora_r >= 1, f"--lora-r must be >= 1, got {self.lora_r}"),
            (0 <= self.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {self.lora_dropout}"),
            (self.save_every >= 0, f"--save-every must be >= 0, got {self.save_every}"),
            (self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}"),
            (
                self.activation_memory_gb >= 0,
                f"--activation-memory-gb must be >= 0, got {self.activation_memory_gb}",
            ),
            (self.keep_checkpoints >= 1, f"--keep-checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (
                self.dtype in ("auto", "bf16", "fp16", "fp32"),
                f"--dtype must be auto, bf16, fp16 or fp32, got {self.dtype!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.eval_data is not None and self.eval_split > 0:
            raise ConfigError("give either --eval-data or --eval-split, not both")
