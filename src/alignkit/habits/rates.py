"""Habit rates: the fraction of many answers showing each habit of over-optimisation.

The numbers `alignkit eval policy` (and `alignkit.evaluation.compare`) report: each
habit is a pure rule ``str -> bool`` from `alignkit.habits.refusal` or
`alignkit.habits.style`, keyed by a stable name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alignkit.habits.refusal import is_refusal
from alignkit.habits.style import (
    has_ai_disclaimer,
    has_apology,
    has_list_summary_padding,
    has_trailing_filler,
)

__all__ = ["HABITS", "habit_rates"]


HABITS: dict[str, Callable[[str], bool]] = {
    "refusal": is_refusal,
    "apology": has_apology,
    "ai_disclaimer": has_ai_disclaimer,
    "list_summary_padding": has_list_summary_padding,
    "trailing_filler": has_trailing_filler,
}
"""Stable habit names (the keys of `habit_rates`) and their rules."""


def habit_rates(texts: Sequence[str]) -> dict[str, float]:
    """Fraction of ``texts`` showing each habit, keyed ``refusal``, ``apology``, ``ai_disclaimer``,
    ``list_summary_padding``, ``trailing_filler`` (0.0 for each when ``texts`` is empty)."""
    n = len(texts)
    if n == 0:
        return {name: 0.0 for name in HABITS}
    return {name: sum(bool(rule(t)) for t in texts) / n for name, rule in HABITS.items()}
