"""How `alignkit eval rm` (and the end of `alignkit rm`) shows a reward model's evaluation: tables and the
length warning."""

from __future__ import annotations

from typing import Any

from alignkit import console

LENGTH_WARNING = 0.5  # score-length correlation above which a reward model may be rewarding length itself


def show_eval(result: dict[str, Any]) -> None:
    """Tables on stderr, and the length warning."""

    def fmt(v: Any) -> Any:
        return "-" if v is None else v

    console.key_values(
        "reward model eval",
        [(k, fmt(result.get(k))) for k in ("accuracy", "pairs", "margin", "length_correlation")]
        + [("ece", fmt(result["calibration"]["ece"]))],
    )
    buckets = result["accuracy_by_length"]
    rows = [
        [name.replace("_", " "), buckets[name]["pairs"], fmt(buckets[name]["accuracy"])]
        for name in ("better_longer", "better_shorter", "same_length")
    ]
    rows += [
        [f"diff {q['min_diff']:+.0f}..{q['max_diff']:+.0f}", q["pairs"], fmt(q["accuracy"])]
        for q in buckets["quartiles"]
    ]
    console.table("accuracy by length (tokens, preferred - other)", ["bucket", "pairs", "accuracy"], rows)
    console.table(
        "calibration: P(preferred) = σ(margin), both orders",
        ["bin", "count", "predicted", "observed"],
        [
            [f"{b['lo']:.1f}-{b['hi']:.1f}", b["count"], fmt(b["predicted"]), fmt(b["observed"])]
            for b in result["calibration"]["bins"]
        ],
    )
    length_warning(result)


def length_warning(result: dict[str, Any]) -> None:
    """Warn (stderr, also with --json) when score and length correlate above `LENGTH_WARNING`."""
    corr = result.get("length_correlation")
    if corr is not None and corr > LENGTH_WARNING:
        console.warn(
            f"score and answer length correlate at {corr:.2f} (> {LENGTH_WARNING}): the reward model may reward "
            "length itself, which a policy will exploit (reward hacking)"
        )
