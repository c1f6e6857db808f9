"""`alignkit plot`: PNG figures from run directories and best-of-n sample files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alignkit import console
from alignkit.cli.app import app


@app.command("plot")
def plot_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories (folders with metrics.jsonl written by rm, dpo, kto, sft or ppo) and "
            "best-of-n sample files (.jsonl written by `alignkit sample --best-of-n N`), in any mix.",
            show_default=False,
            metavar="RUN_DIR|FILE.jsonl",
        ),
    ],
    output: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional)
        typer.Option(
            "--output",
            "-o",
            help="Folder for the PNG files (default: plots/ inside the first run directory). Existing "
            "figures of the same name are replaced.",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the summary as one JSON object on stdout: {figures: [{path, series}], ...}."
        ),
    ] = False,
) -> None:
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
    from alignkit.plots import make_plots

    summary = make_plots(paths, output)
    if json_:
        console.print_json(summary)
        return
    console.table(
        f"figures in {summary['output']}",
        ["file", "series"],
        [[Path(f["path"]).name, "\n".join(f["series"])] for f in summary["figures"]],
    )
    for skip in summary["skipped"]:
        console.info(f"skipped {skip['figure']}: {skip['reason']}")
    for note in summary["notes"]:
        console.info(note)
