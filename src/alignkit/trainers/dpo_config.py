"""Options of `alignkit dpo` (Direct Preference Optimization on TRL's DPOTrainer).

The common trainer options come from `TrainConfig`. `DPO_LOSSES` is the one
table of TRL 1.16's DPO loss types: the help text of ``--loss`` is generated
from it, and `DPOConfig.validate` checks names against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.config import CpuAttentionOption, TrainConfig
from alignkit.errors import ConfigError

# name -> (what it optimises, in one line; the paper). Every `loss_type` TRL 1.16's DPOTrainer accepts.
DPO_LOSSES: dict[str, tuple[str, str]] = {
    "sigmoid": (
        "-log sigmoid(beta * (chosen log-ratio - rejected log-ratio)): the DPO loss",
        "Rafailov et al. 2023, arXiv:2305.18290",
    ),
    "hinge": (
        "relu(1 - beta * log-ratio margin): the SLiC hinge loss",
        "Zhao et al. 2023 (SLiC-HF), arXiv:2305.10425",
    ),
    "ipo": (
        "(per-token log-ratio margin - 1/(2 beta))^2: regresses the margin, does not overfit to certain pairs",
        "Azar et al. 2023 (IPO), arXiv:2310.12036",
    ),
    "exo_pair": (
        "reverse KL to label-smoothed preferences (needs --label-smoothing > 0, e.g. 1e-3)",
        "Ji et al. 2024 (EXO), arXiv:2402.00856",
    ),
    "nca_pair": (
        "noise-contrastive: absolute likelihood of the chosen answer, not only the margin",
        "Chen et al. 2024 (NCA), arXiv:2402.05369",
    ),
    "robust": (
        "DPO unbiased for labels flipped with probability --label-smoothing (in [0, 0.5))",
        "Chowdhury et al. 2024 (rDPO), arXiv:2403.00409",
    ),
    "bco_pair": (
        "binary classifier: chosen reward up, rejected reward down, each on its own",
        "Jung et al. 2024 (BCO), arXiv:2404.04656",
    ),
    "sppo_hard": (
        "squared loss pushing log-ratios to +1/(2 beta) (chosen) and -1/(2 beta) (rejected)",
        "Wu et al. 2024 (SPPO), arXiv:2405.00675",
    ),
    "aot": (
        "optimal-transport alignment of the sorted log-ratio margins in a batch (paired)",
        "Melnyk et al. 2024 (AOT), arXiv:2406.05882",
    ),
    "aot_unpaired": (
        "AOT over the sorted chosen and rejected log-ratios separately (unpaired)",
        "Melnyk et al. 2024 (AOT), arXiv:2406.05882",
    ),
    "apo_zero": (
        "anchored: raise chosen, lower rejected likelihood (chosen answers better than the model's)",
        "D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266",
    ),
    "apo_down": (
        "anchored: lower both, rejected more (chosen answers worse than the model's own)",
        "D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266",
    ),
    "discopop": (
        "log-ratio modulated blend of logistic and exponential losses (temperature 0.05)",
        "Lu et al. 2024 (DiscoPOP), arXiv:2406.08414",
    ),
    "sft": (
        "negative log-likelihood of the chosen answer only (combine with others, e.g. sigmoid,sft)",
        "Wang et al. 2024 (MPO), arXiv:2411.10442",
    ),
    "sigmoid_norm": (
        "DPO on per-token (length-normalised) log-ratios",
        "Lambert et al. 2024 (Tulu 3, length-normalised DPO), arXiv:2411.15124",
    ),
}


# The loss types whose TRL 1.16 formula reads `label_smoothing` (DPOTrainer's loss: robust, exo_pair, aot,
# aot_unpaired); every other loss, sigmoid included, ignores it, so `DPOConfig.validate` refuses it there.
LABEL_SMOOTHING_LOSSES = ("robust", "exo_pair", "aot", "aot_unpaired")

LOSS_HELP_HEAD = "Loss type, or several joined by commas (e.g. sigmoid,sft)."


def loss_lines() -> list[str]:
    """One line per loss type: ``name: what it does [paper]``."""
    return [f"{name}: {what} [{paper}]" for name, (what, paper) in DPO_LOSSES.items()]


def loss_help() -> str:
    """The help of ``--loss`` (the docstring of `DPOConfig.loss` must equal it; a test checks)."""
    return LOSS_HELP_HEAD + " " + "; ".join(loss_lines()) + "."


def loss_docstring(width: int = 106) -> str:
    """`loss_help` wrapped as the source of `DPOConfig.loss`'s docstring (``python -m alignkit.trainers.dpo_config``)."""
    import textwrap

    return (
        textwrap.fill(
            loss_help(),
            width,
            initial_indent='    """',
            subsequent_indent="    ",
            break_on_hyphens=False,
            break_long_words=False,
        )
        + '"""'
    )


def parse_losses(spec: str) -> list[str]:
    """``"sigmoid"`` or a comma-separated combination such as ``"sigmoid,sft"`` -> checked names."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError("--loss must name at least one loss type")
    unknown = [n for n in names if n not in DPO_LOSSES]
    if unknown:
        raise ConfigError(f"unknown --loss {', '.join(unknown)}; choose from {', '.join(DPO_LOSSES)}")
    return names


@dataclass
class DPOConfig(TrainConfig, CpuAttentionOption):
    """`alignkit dpo`: Direct Preference Optimization on preference pairs (no reward model)."""

    loss: str = "sigmoid"
    """Loss type, or several joined by commas (e.g. sigmoid,sft). sigmoid: -log sigmoid(beta * (chosen
    log-ratio - rejected log-ratio)): the DPO loss [Rafailov et al. 2023, arXiv:2305.18290]; hinge: relu(1
    - beta * log-ratio margin): the SLiC hinge loss [Zhao et al. 2023 (SLiC-HF), arXiv:2305.10425]; ipo:
    (per-token log-ratio margin - 1/(2 beta))^2: regresses the margin, does not overfit to certain pairs
    [Azar et al. 2023 (IPO), arXiv:2310.12036]; exo_pair: reverse KL to label-smoothed preferences (needs
    --label-smoothing > 0, e.g. 1e-3) [Ji et al. 2024 (EXO), arXiv:2402.00856]; nca_pair:
    noise-contrastive: absolute likelihood of the chosen answer, not only the margin [Chen et al. 2024
    (NCA), arXiv:2402.05369]; robust: DPO unbiased for labels flipped with probability --label-smoothing
    (in [0, 0.5)) [Chowdhury et al. 2024 (rDPO), arXiv:2403.00409]; bco_pair: binary classifier: chosen
    reward up, rejected reward down, each on its own [Jung et al. 2024 (BCO), arXiv:2404.04656];
    sppo_hard: squared loss pushing log-ratios to +1/(2 beta) (chosen) and -1/(2 beta) (rejected) [Wu et
    al. 2024 (SPPO), arXiv:2405.00675]; aot: optimal-transport alignment of the sorted log-ratio margins
    in a batch (paired) [Melnyk et al. 2024 (AOT), arXiv:2406.05882]; aot_unpaired: AOT over the sorted
    chosen and rejected log-ratios separately (unpaired) [Melnyk et al. 2024 (AOT), arXiv:2406.05882];
    apo_zero: anchored: raise chosen, lower rejected likelihood (chosen answers better than the model's)
    [D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266]; apo_down: anchored: lower both, rejected more
    (chosen answers worse than the model's own) [D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266];
    discopop: log-ratio modulated blend of logistic and exponential losses (temperature 0.05) [Lu et al.
    2024 (DiscoPOP), arXiv:2406.08414]; sft: negative log-likelihood of the chosen answer only (combine
    with others, e.g. sigmoid,sft) [Wang et al. 2024 (MPO), arXiv:2411.10442]; sigmoid_norm: DPO on
    per-token (length-normalised) log-ratios [Lambert et al. 2024 (Tulu 3, length-normalised DPO),
    arXiv:2411.15124]."""
    beta: float = 0.1
    """Strength of the pull towards the reference: implicit reward = beta * (log pi - log pi_ref). For ipo it is tau."""
    batch_size: int = 1
    """Pairs per micro-batch (2 sequences each). 1 pads least and keeps activations small: on a CPU it is the fastest; raise --grad-accum for a larger batch."""
    grad_accum: int = 8
    """Micro-batches accumulated per optimizer step (effective batch = batch_size x grad_accum x processes)."""
    label_smoothing: float = 0.0
    """Probability that a preference label is wrong (robust, aot, aot_unpaired) or EXO's epsilon (exo_pair needs > 0). Only these losses use it: with any other --loss a non-zero value is an error."""
    loss_weights: list[float] | None = None
    """Weights of the losses in a combination like --loss sigmoid,sft (default: 1 each)."""
    share_prompt: bool = True
    """Forward each pair's prompt once (chosen and rejected packed in one row, block attention mask) and run the LM head on answer tokens only: same log-probs, fewer FLOPs."""
    precompute_ref: bool = False
    """Compute the reference log-probs of every pair once before training (no reference forward per step)."""
    ref_model: str | None = None
    """A separate frozen reference model (same tokenizer as --model). Default: the base with the adapter off (LoRA), or a frozen copy of --model (--no-lora)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower. Off: the default model is small."""
    group_by_length: bool = True
    """Batch examples of similar length together (shuffled in groups of 50 batches): much less padding, so faster and leaner."""
    eval_batch_size: int = 8
    """Pairs per forward pass during evaluation."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep (older ones are deleted)."""

    def validate(self) -> None:
        validate_common(self)
        names = parse_losses(self.loss)
        if self.beta <= 0:
            raise ConfigError(f"--beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if "exo_pair" in names and self.label_smoothing == 0:
            raise ConfigError("--loss exo_pair needs --label-smoothing > 0 (the EXO paper uses 1e-3)")
        if self.label_smoothing != 0 and not set(names) & set(LABEL_SMOOTHING_LOSSES):
            raise ConfigError(
                f"--label-smoothing {self.label_smoothing} has no effect on --loss {self.loss}: TRL uses it only "
                f"in {', '.join(LABEL_SMOOTHING_LOSSES)}; drop --label-smoothing or add one of these losses"
            )
        if self.loss_weights is not None and len(self.loss_weights) != len(names):
            raise ConfigError(
                f"--loss-weights needs one weight per loss ({len(names)}), got {len(self.loss_weights)}"
            )
        if self.eval_batch_size < 1:
            raise ConfigError(f"--eval-batch-size must be >= 1, got {self.eval_batch_size}")


def validate_common(cfg: TrainConfig) -> None:
    """Checks every TRL-backed trainer (dpo, kto, sft) shares; raises ConfigError naming the option."""
    checks = [
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (cfg.grad_accum >= 1, f"--grad-accum must be >= 1, got {cfg.grad_accum}"),
        (cfg.max_length >= 16, f"--max-length must be >= 16 tokens, got {cfg.max_length}"),
        (cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}"),
        (0 <= cfg.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {cfg.warmup_ratio}"),
        (cfg.max_steps == -1 or cfg.max_steps >= 1, f"--max-steps must be -1 or >= 1, got {cfg.max_steps}"),
        (cfg.max_steps != -1 or cfg.epochs > 0, f"--epochs must be > 0, got {cfg.epochs}"),
        (0 <= cfg.eval_split < 1, f"--eval-split must be in [0, 1), got {cfg.eval_split}"),
        (cfg.eval_every >= 0, f"--eval-every must be >= 0, got {cfg.eval_every}"),
        (cfg.save_every >= 0, f"--save-every must be >= 0, got {cfg.save_every}"),
        (cfg.log_every >= 1, f"--log-every must be >= 1, got {cfg.log_every}"),
        (cfg.lora_r >= 1, f"--lora-r must be >= 1, got {cfg.lora_r}"),
        (cfg.lora_alpha > 0, f"--lora-alpha must be > 0, got {cfg.lora_alpha}"),
        (0 <= cfg.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {cfg.lora_dropout}"),
        (cfg.weight_decay >= 0, f"--weight-decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.max_grad_norm >= 0, f"--max-grad-norm must be >= 0, got {cfg.max_grad_norm}"),
        (
            cfg.dtype in ("auto", "bf16", "fp16", "fp32"),
            f"--dtype must be auto, bf16, fp16 or fp32, got {cfg.dtype!r}",
        ),
        (
            cfg.report_to in ("none", "tensorboard", "trackio", "wandb"),
            f"--report-to must be none, tensorboard, trackio or wandb, got {cfg.report_to!r}",
        ),
        (getattr(cfg, "keep_checkpoints", 1) >= 1, "--keep-checkpoints must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.eval_data is not None and cfg.eval_split > 0:
        raise ConfigError("give either --eval-data or --eval-split, not both")


if __name__ == "__main__":  # print the docstring of `loss` after editing DPO_LOSSES
    print(loss_docstring())
