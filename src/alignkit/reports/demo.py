"""The demo's comparison table on the console: each method against the base model, gold versus proxy.

`alignkit.demo.compare` measures (win rates, scores, KL, verdicts); this module only prints its result.
"""

from __future__ import annotations

from typing import Any

from alignkit import console


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def show_table(result: dict[str, Any]) -> None:
    """The comparison table; its narrowest layout (no word split) is 77 columns, so it fits 80."""
    rows = []
    for m in result["methods"]:
        win = "-" if m["win_rate"] is None else f"{m['win_rate']:.2f} ± {m['win_rate_stderr']:.2f}"
        kl = ("≤ " if m["kl_kind"] == "bound" else "") + _f(m["kl"], 2)
        rows.append(
            [m["method"], win, _f(m["gold"]), _f(m["proxy"]), kl, _f(m["mean_length"], 1), m["verdict"]]
        )
    console.table(
        "alignkit demo: each method against the base model on held-out prompts",
        ["method", "win rate vs base (gold)", "gold score", "proxy score", "KL (nats)", "length", "verdict"],
        rows,
    )
    if any(m["kl_kind"] == "bound" for m in result["methods"]):
        console.info("KL ≤: the analytic bound log N - (N-1)/N of best-of-n, not a measurement")
    rm = result.get("reward_model") or {}
    console.info(
        f"reward model: held-out pair accuracy {_f(rm.get('eval_accuracy'))} on {rm.get('eval_pairs')} pairs; "
        f"gold = {result.get('gold')}; proxy = {result.get('proxy')}"
    )
