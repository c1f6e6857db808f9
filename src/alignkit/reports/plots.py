"""`alignkit plot` on the console: which figures were written, their series, what was skipped and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit import console


def show_plots(summary: dict[str, Any]) -> None:
    """The `make_plots` summary as a table and lines on stderr (--json prints the summary itself)."""
    console.table(
        f"figures in {summary['output']}",
        ["file", "series"],
        [[Path(f["path"]).name, "\n".join(f["series"])] for f in summary["figures"]],
    )
    for skip in summary["skipped"]:
        console.info(f"skipped {skip['figure']}: {skip['reason']}")
    for note in summary["notes"]:
        console.info(note)
