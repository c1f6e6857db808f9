"""Options of `alignkit eval rm` and `alignkit score` (one dataclass each; the docstrings are the CLI help)."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.errors import ConfigError


@dataclass
class ScoringOptions:
    """Options shared by `alignkit eval rm` and `alignkit score`."""

    reward_model: str = ""
    """Reward model: an `alignkit rm` run dir, its reward_model/ dir, or an AutoModelForSequenceClassification checkpoint."""
    data: str = ""
    """Records with answers to score."""
    format: str | None = None
    """Read --data as this format instead of detecting it, e.g. trl-preference, hh-rlhf, ranking, trl-sft (an unknown name lists them all)."""
    max_length: int | None = None
    """Longest prompt+answer in tokens (default: the reward model's training max_length)."""
    batch_size: int = 16
    """Answers scored per forward pass."""
    dtype: str = "auto"
    """Precision: auto (bf16 where the CPU/GPU supports it, else fp32), bf16, fp32."""
    skip_invalid: bool = False
    """Skip invalid records (counted) instead of stopping at the first."""
    json: bool = False
    """Print one JSON object on stdout."""

    def validate(self) -> None:
        _check_common(self)


@dataclass
class EvalRMConfig(ScoringOptions):
    """`alignkit eval rm`: accuracy, margin, length bias and calibration of a reward model."""

    data: str = ""
    """Held-out preference pairs or rankings (any format `alignkit data inspect` reads)."""
    json: bool = False
    """Print one JSON object on stdout instead of tables."""


@dataclass
class ScoreConfig(ScoringOptions):
    """`alignkit score`: add a reward-model score to every answer of a data file."""

    data: str = ""
    """Records with answers: preference pairs, rankings, or prompt+completion (sft / labelled) data."""
    output: str = ""
    """Output .jsonl: each record (TRL conversational JSON) plus `score` (one answer) or `scores` (several)."""
    max_length: int | None = None
    """Longest prompt+answer in tokens (default: the reward model's training max_length); longer answers get null."""
    json: bool = False
    """Print a one-object JSON summary on stdout at the end."""

    def validate(self) -> None:
        _check_common(self)
        if not self.output:
            raise ConfigError("--output is required: the .jsonl file to write")


def _check_common(cfg) -> None:
    if not cfg.reward_model:
        raise ConfigError(
            "--reward-model is required: an `alignkit rm` run dir or a sequence-classifier checkpoint"
        )
    if not cfg.data:
        raise ConfigError("--data is required: the file with the answers to score")
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.max_length is not None and cfg.max_length < 8:
        raise ConfigError(f"--max-length must be >= 8 tokens, got {cfg.max_length}")
    if cfg.dtype not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"--dtype must be auto, bf16, fp16 or fp32, got {cfg.dtype!r}")
