"""`alignkit label --stats` on the console: counts, position bias, agreement per annotator."""

from __future__ import annotations

from typing import Any

from alignkit import console


def show_label_stats(path: str, stats: dict[str, Any]) -> None:
    """The `label_stats` of the label file ``path`` as tables on stderr (--json prints ``stats`` itself)."""
    bias = stats["position_bias"]
    rate = bias.get("first_position_rate", bias.get("first_shown_best_rate"))
    console.key_values(
        f"labels: {path}",
        [
            ("mode", stats["mode"]),
            ("rows", stats["rows"]),
            ("labels", stats["labels"]),
            ("ties", stats["ties"]),
            ("skips", stats["skips"]),
            ("undone", stats["undone"]),
            ("items", stats["items"]),
            (
                "first shown chosen" if stats["mode"] == "pair" else "first shown ranked best",
                "-"
                if rate is None
                else f"{rate:.3f} (chance {bias.get('expected', 0):.3f}, n={bias['decisions']})",
            ),
            (
                "swap consistency",
                "-" if stats["swap_consistency"] is None else f"{stats['swap_consistency']:.3f}",
            ),
            ("agreement", "-" if stats["agreement_overall"] is None else f"{stats['agreement_overall']:.3f}"),
        ],
    )
    rows = []
    for who, c in stats["annotators"].items():
        r = c.get("first_position_rate", c.get("first_shown_best_rate"))
        rows.append(
            [
                who,
                c["labels"],
                c["ties"],
                c["skips"],
                "-" if r is None else f"{r:.3f}",
                "-" if c.get("swap_consistency") is None else f"{c['swap_consistency']:.3f}",
            ]
        )
    console.table(
        "annotators",
        ["annotator", "labels", "ties", "skips", "first-position rate", "swap consistency"],
        rows,
    )
    if stats["agreement"]:
        console.table(
            "agreement where items overlap",
            ["annotators", "items", "agreement"],
            [
                [" / ".join(a["annotators"]), a["overlap"], f"{a['agreement']:.3f}"]
                for a in stats["agreement"]
            ],
        )
