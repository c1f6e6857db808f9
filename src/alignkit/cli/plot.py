"""`alignkit plot`: PNG figures from run directories and best-of-n sample files."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.plots.config import PlotConfig


@app.command("plot")
@config_command(PlotConfig, positional=("paths",))
def plot_command(cfg: PlotConfig) -> None:
    """Draw loss curves, reward versus KL, length drift and best-of-k curves as PNG files.

    Figures (each only when some input has data for it; the summary says which were skipped and why):
    loss.png (every *loss* metric, one panel per metric, one line per run), reward_kl.png (reward-model
    score against KL to the reference, one line per run in step order, plus best-of-k at its KL bound),
    length.png (mean response length over steps), best_of_n.png (expected best-of-k score for k = 1..N
    from one best-of-N file, with the KL bound log k - (k-1)/k on the top axis). docs/plot.md explains how
    to read each one.

    Example:

        alignkit plot runs/ppo-1 runs/dpo-1 samples/best16.jsonl --output runs/compare
    """
    from alignkit.plots import run_plot
    from alignkit.reports.plots import show_plots

    summary = run_plot(cfg)
    if cfg.json:
        console.print_json(summary)
        return
    show_plots(summary)
