"""PNG figures from runs and best-of-n samples: `run_plot` (`make_plots` on a `PlotConfig`) is what
`alignkit plot` calls.

- `config`: `PlotConfig`, the options of `alignkit plot`;
- `sources`: read run directories (metrics.jsonl, the command from report.json / config.yaml) and
  best-of-n sample files, with FILE:LINE errors;
- `best_of_k`: the unbiased best-of-k estimator from one best-of-N sample, and the KL bound;
- `figures`: loss curves, reward versus KL, length drift, best-of-k (matplotlib, imported lazily).

docs/plot.md explains each figure and how to read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.errors import UserError
from alignkit.plots.sources import load_inputs

if TYPE_CHECKING:
    from alignkit.plots.config import PlotConfig


def default_output(first: Path) -> Path:
    """``plots/`` inside the first run directory (beside the file for a metrics.jsonl or sample file)."""
    first = Path(first)
    return (first if first.is_dir() else first.parent) / "plots"


def make_plots(paths: list[Path], output: Path | None = None) -> dict[str, Any]:
    """Draw every figure some input has data for and write it to ``output`` as PNG (atomically).

    Returns ``{"output": DIR, "figures": [{"name", "path", "series": [...]}], "skipped": [{"figure",
    "reason"}], "notes": [...]}``. Raises `UserError` for a bad input or when nothing can be drawn.
    """
    from alignkit.files import atomic_write_bytes
    from alignkit.plots.figures import FIGURES, Drawn, png_bytes

    if not paths:
        raise UserError("give at least one run directory or best-of-n file")
    runs, samples = load_inputs(paths)
    out = Path(output) if output is not None else default_output(paths[0])
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; give a folder for the PNG files")
    drawn: list[tuple[str, Drawn]] = []
    skipped = []
    for name, build in FIGURES.items():
        result = build(runs, samples)
        if isinstance(result, str):
            skipped.append({"figure": name, "reason": result})
        else:
            drawn.append((name, result))
    if not drawn:
        reasons = "; ".join(s["reason"] for s in skipped)
        raise UserError(f"nothing to plot in {', '.join(str(p) for p in paths)}: {reasons}")
    figures, notes = [], []
    for name, result in drawn:  # every figure is drawn before any file is written
        path = out / name
        atomic_write_bytes(path, png_bytes(result.figure))
        figures.append({"name": name, "path": str(path), "series": result.series})
        notes.extend(result.notes)
    notes.extend(f"{r.label}: metrics.jsonl has no rows yet" for r in runs if not r.rows)
    return {"output": str(out), "figures": figures, "skipped": skipped, "notes": notes}


def run_plot(cfg: PlotConfig) -> dict[str, Any]:
    """`alignkit plot`: `make_plots` of the config's paths into its output folder; returns the summary."""
    return make_plots([Path(p) for p in cfg.paths], None if cfg.output is None else Path(cfg.output))


__all__ = ["default_output", "make_plots", "run_plot"]
