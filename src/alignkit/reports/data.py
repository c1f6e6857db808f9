"""`alignkit data inspect` and `alignkit data demo` on the console: counts, lengths, skipped records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit import console

MAX_REASONS_SHOWN = 20


def show_inspect(report: dict[str, Any]) -> None:
    """The `inspect_data` report as tables on stderr (--json prints the report itself)."""
    unit = report.get("length_unit", "tokens")
    console.key_values(
        f"data: {report['path']}",
        [
            ("format", report["format"]),
            ("kind", report["kind"]),
            ("records", report["records"]),
            ("skipped", report["skipped"]),
        ]
        + [(k, report[k]) for k in ("pairs", "rankings") if k in report],
    )
    rows = []
    for name, stats in report.get("lengths", {}).items():
        if stats:
            rows.append(
                [
                    name.replace("_tokens", f" ({unit})"),
                    *(stats.get(k) for k in ("min", "mean", "p50", "p95", "max")),
                ]
            )
    if rows:
        console.table("lengths", ["", "min", "mean", "p50", "p95", "max"], rows)
    reasons = report.get("skipped_reasons", [])
    if reasons:
        shown = reasons[:MAX_REASONS_SHOWN]
        console.table("skipped records", ["where", "why"], [[r["source"], r["reason"]] for r in shown])
        if len(reasons) > len(shown):
            console.info(f"... and {len(reasons) - len(shown)} more (use --json for all)")
    for note in report.get("notes", []):
        console.warn(note)
    if report.get("sample") is not None:
        import json

        console.info("sample record:")
        console.info(json.dumps(report["sample"], indent=2, ensure_ascii=False))


def show_demo_data(written: tuple[Path, Path]) -> None:
    """The two files `alignkit data demo` wrote (pairs, prompts)."""
    pairs, prompts = written
    console.info(f"wrote {pairs} and {prompts}")
