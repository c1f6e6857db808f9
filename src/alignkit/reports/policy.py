"""`alignkit eval policy` on the console: the policy beside its reference, and sample answers."""

from __future__ import annotations

from typing import Any

from alignkit import console


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def show_policy_eval(result: dict[str, Any], prompts, policy, reference, rows, n_show: int) -> None:
    """`alignkit eval policy`'s side-by-side summary on stderr, and ``n_show`` sample answers."""
    p, r = result["policy_stats"], result["reference_stats"]
    table_rows = [
        ["win rate (policy vs reference)", _fmt(result["win_rate"]), "", result["win_rate_by"]],
        [
            "KL(policy || reference), nats",
            _fmt(result["kl"]),
            "0",
            f"+- {_fmt(result['kl_stderr'])}" + ("" if result["kl_is_sampling_kl"] else " (see kl_note)"),
        ],
    ]
    for role in ("proxy", "gold"):
        if role in result and "mean" in result[role]:
            s = result[role]
            table_rows.append(
                [f"{role} reward (mean)", _fmt(s["mean"]), _fmt(s["reference_mean"]), s["scorer"]]
            )
    table_rows += [
        ["length (tokens)", _fmt(p["mean_length"]), _fmt(r["mean_length"]), ""],
        ["cut at the length limit", _fmt(p["truncated"]), _fmt(r["truncated"]), ""],
        ["repetition (3-grams)", _fmt(p["repetition"]), _fmt(r["repetition"]), ""],
    ]
    for habit, rate in p["habits"].items():
        table_rows.append([f"habit: {habit}", _fmt(rate), _fmt(r["habits"].get(habit)), ""])
    if "over_refusal" in result:
        o = result["over_refusal"]
        table_rows.append(
            ["refusals on safe prompts", _fmt(o["policy"]), _fmt(o["reference"]), f"{o['prompts']} prompts"]
        )
    console.table("policy versus reference", ["measure", "policy", "reference", "note"], table_rows)
    examples = []
    for i in range(min(n_show, len(prompts))):
        cells = [prompts[i][:200], policy[i][:300], reference[i][:300]]
        if "proxy" in rows:
            cells.append(f"{rows['proxy'][0][i]:.2f} / {rows['proxy'][1][i]:.2f}")
        examples.append(cells)
    if examples:
        cols = ["prompt", "policy", "reference"] + (["proxy (pol/ref)"] if "proxy" in rows else [])
        console.table("sample answers", cols, examples)
