"""`alignkit models` on the console: the embedded default and the cached models, one row each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit import console


def show_models(cache: Path, models: list[dict[str, Any]]) -> None:
    """The table of models in the cache ``cache`` (--json prints the listing itself)."""
    console.table(
        f"models (cache: {cache})",
        ["name", "source", "status", "size", "path"],
        [
            [
                m.get("name"),
                m.get("source"),
                "prepared" if m.get("prepared") else "not prepared (alignkit models --prepare)",
                _size(m.get("size_bytes")),
                m.get("path") or "",
            ]
            for m in models
        ],
    )


def _size(n: int | None) -> str:
    if not n:
        return ""
    return f"{n / 2**20:,.0f} MiB"
