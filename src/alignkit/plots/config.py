"""Options of `alignkit plot`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlotConfig:
    """`alignkit plot`: PNG figures from run directories and best-of-n sample files."""

    paths: list[str] = field(default_factory=list, metadata={"metavar": "RUN_DIR|FILE.jsonl"})
    """Run directories (folders with metrics.jsonl written by rm, dpo, kto, sft, ppo, grpo or rloo) and best-of-n sample files (.jsonl written by `alignkit sample --best-of-n N`), in any mix."""
    output: str | None = None
    """Folder for the PNG files (default: plots/ inside the first run directory). Existing figures of the same name are replaced."""
    json: bool = False
    """Print the summary as one JSON object on stdout: {figures: [{path, series}], ...}."""
