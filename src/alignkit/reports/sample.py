"""`alignkit sample` on the console: counts, the best-of-n KL bound and scores, speed, what was written."""

from __future__ import annotations

from typing import Any

from alignkit import console


def show_sample(summary: dict[str, Any]) -> None:
    """The `run_sample` summary as one key/value table on stderr (--json prints the summary itself)."""
    items = [(key, summary[key]) for key in ("mode", "n", "prompts", "candidates") if key in summary]
    if "kl_bound" in summary:
        items += [
            ("KL bound (nats)", summary["kl_bound"]),
            ("mean best score", summary["mean_best_score"]),
            ("mean score (1 sample)", summary["mean_score"]),
        ]
        items += [
            (f"  {name} mean / best", f"{_num(v['mean'])} / {_num(v['mean_best'])}")
            for name, v in summary["rewards"].items()
        ]
        if "gate_pass_rate" in summary:
            items.append(("gate pass rate", summary["gate_pass_rate"]))
    items += [
        ("tokens/s", summary["tokens_per_s"]),
        ("truncated prompts", summary["truncated_prompts"]),
        ("unfinished answers", summary["unfinished_fraction"]),
        ("KV cache budget (GB)", summary.get("memory_budget_gb") or "none"),
        ("rows in flight (most)", summary.get("max_rows_in_flight")),
        ("output", summary["output"]),
    ]
    items += [(f"exported {k}", summary[k]) for k in ("pairs", "sft") if k in summary]
    console.key_values("alignkit sample", items)


def _num(value: float | None) -> str:
    return "none scored" if value is None else f"{value:.4g}"
