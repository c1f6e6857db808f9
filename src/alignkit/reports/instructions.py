"""`alignkit eval instructions` on the console: IFEval's four accuracies, the answers, a table per type."""

from __future__ import annotations

from typing import Any

from alignkit import console

SUMMARY_KEYS = (
    ("model", "model"),
    ("answers_from", "answers from"),
    ("prompts", "prompts"),
    ("instructions", "instructions"),
    ("prompt_strict", "prompt-level strict"),
    ("inst_strict", "instruction-level strict"),
    ("prompt_loose", "prompt-level loose"),
    ("inst_loose", "instruction-level loose"),
    ("max_new_tokens", "max new tokens"),
    ("unfinished", "cut at max new tokens"),
    ("mean_tokens", "mean answer tokens"),
    ("tokens_per_s", "tokens/s"),
    ("memory_budget_gb", "KV cache budget (GB)"),
    ("peak_kv_gb", "KV cache peak (GB)"),
    ("peak_rss_gb", "peak RSS (GB)"),
    ("seconds", "seconds"),
    ("output", "output"),
)


def show_instructions(result: dict[str, Any]) -> None:
    """The `run_eval_instructions` summary, the per-type table and any examples, on stderr."""
    items = [(label, result[key]) for key, label in SUMMARY_KEYS if result.get(key) is not None]
    console.key_values("alignkit eval instructions (IFEval)", items)
    rows = [
        [name, row["instructions"], row["strict"], row["loose"]] for name, row in result["by_type"].items()
    ]
    console.table("per instruction type", ["instruction", "count", "strict", "loose"], rows)
    examples = result.get("examples") or []
    if examples:
        console.table(
            "answers",
            ["prompt", "answer", "missed (strict)"],
            [[e["prompt"][:200], e["response"][:300], ", ".join(e["missed"]) or "-"] for e in examples],
        )
