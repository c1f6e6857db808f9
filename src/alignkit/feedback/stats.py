"""`alignkit label stats`: what a label file holds, how far annotators agree, how biased the order was.

* counts of the judgements that count (tombstones applied): labels, ties, skips (can't judge among them);
  per annotator, also the median seconds a judgement took (rows of people record it);
* agreement: for every two annotators who judged the same items (same prompt and answers), the fraction of
  those items where their judgements agree. Pair mode: the same answer chosen (or both tie). Rank mode: the
  fraction of answer pairs both ordered the same way (ties count as an order of their own). Beside it
  Cohen's kappa per pair, Krippendorff's alpha over everyone, and each annotator's agreement with the
  majority of the others (`alignkit.feedback.agreement` explains each);
* position bias: pair mode, the rate at which the answer *shown first* was chosen (0.5 without bias; the
  two-sided normal-approximation p-value tests that); rank mode, the rate at which the first shown answer was
  ranked best, against what chance gives;
* judge rows judged in both orders (``--swap``): the consistency rate.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.data.labels import LabelState, read_labels, torn_message
from alignkit.feedback.agreement import (
    judged_units,
    krippendorff_alpha,
    majority_agreement,
    pair_kappas,
    row_ranks,
)
from alignkit.feedback.store import CANT_JUDGE


def _outcome(row: dict[str, Any]) -> tuple[frozenset[str], dict[str, int]]:
    """(the set of answers judged, rank per answer: 0 = best, equal = tie)."""
    ranks = row_ranks(row)
    return frozenset(ranks), ranks


def _agree(a: dict[str, int], b: dict[str, int]) -> float:
    """Fraction of answer pairs both judgements order the same way (for two answers: 1 or 0)."""
    pairs = list(itertools.combinations(sorted(a), 2))
    if not pairs:
        return 1.0
    same = sum((a[x] > a[y]) - (a[x] < a[y]) == (b[x] > b[y]) - (b[x] < b[y]) for x, y in pairs)
    return same / len(pairs)


def _p_value_half(successes: int, n: int) -> float | None:
    """Two-sided p-value of ``successes`` in ``n`` fair coin flips (normal approximation, continuity corrected)."""
    if n == 0:
        return None
    z = (abs(successes - n / 2) - 0.5) / math.sqrt(n / 4)
    return 1.0 if z <= 0 else math.erfc(z / math.sqrt(2))


def compute_stats(state: LabelState) -> dict[str, Any]:
    effective = [row for _, row in state.effective()]
    events = Counter(row["event"] for row in effective)
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"labels": 0, "ties": 0, "skips": 0, "cant_judge": 0}
    )
    seconds: defaultdict[str, list[float]] = defaultdict(list)
    first_chosen: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    rank_first_best: Counter[str] = Counter()
    rank_expected: defaultdict[str, float] = defaultdict(float)
    swap_total: Counter[str] = Counter()
    swap_consistent: Counter[str] = Counter()
    skip_reasons: Counter[str] = Counter()
    judged: dict[str, dict[str, tuple[frozenset[str], dict[str, int]]]] = defaultdict(
        dict
    )  # item -> who -> outcome

    for row in effective:
        who = str(row.get("annotator", ""))
        event = row["event"]
        per[who]["labels" if event == "label" else "ties" if event == "tie" else "skips"] += 1
        if isinstance(row.get("seconds"), (int, float)) and event != "undo":
            seconds[who].append(float(row["seconds"]))
        if event == "skip":
            per[who]["cant_judge"] += row.get("reason") == CANT_JUDGE
            skip_reasons[str(row.get("reason", "skipped"))] += 1
            continue
        judged[str(row["item_id"])][who] = _outcome(row)
        swap = (row.get("judge") or {}).get("swap")
        if isinstance(swap, dict) and "consistent" in swap:
            swap_total[who] += 1
            swap_consistent[who] += bool(swap["consistent"])
        if event != "label":
            continue
        if "chosen" in row and row.get("choice") in (1, 2):
            decisions[who] += 1
            first_chosen[who] += row["choice"] == 1
        elif "ranks" in row and row["ranks"]:
            ranks = row["ranks"]
            decisions[who] += 1
            rank_first_best[who] += ranks[0] == min(ranks)
            rank_expected[who] += ranks.count(min(ranks)) / len(ranks)

    mode = "/".join(sorted(state.modes)) or "none"
    units = judged_units(effective)
    majority = majority_agreement(units)
    for who, counts in per.items():
        counts["seconds_median"] = statistics.median(seconds[who]) if seconds[who] else None
        counts["majority_agreement"] = majority[who]["rate"] if who in majority else None
        counts["majority_units"] = majority[who]["units"] if who in majority else 0
        n = decisions[who]
        if n and mode == "pair":
            counts["first_position_rate"] = first_chosen[who] / n
        elif n:
            counts["first_shown_best_rate"] = rank_first_best[who] / n
            counts["first_shown_best_expected"] = rank_expected[who] / n
        if swap_total[who]:
            counts["swap_consistency"] = swap_consistent[who] / swap_total[who]

    agreement = _pair_agreement(judged, units)
    overlap = sum(x["overlap"] for x in agreement)
    bias = _position_bias(mode, decisions, first_chosen, rank_first_best, rank_expected)
    n_swap = sum(swap_total.values())
    counts_all = state.counts()
    return {
        "path": state.path,
        "mode": mode,
        "rows": len(state.rows),
        "undone": counts_all["undo"],
        "labels": events["label"],
        "ties": events["tie"],
        "skips": events["skip"],
        "cant_judge": skip_reasons[CANT_JUDGE],
        "skip_reasons": dict(skip_reasons),
        "items": len(judged),
        "datasets": sorted(state.datasets),
        "annotators": {who: dict(c) for who, c in sorted(per.items())},
        "agreement": agreement,
        "agreement_overall": (sum(x["agreement"] * x["overlap"] for x in agreement) / overlap)
        if overlap
        else None,
        "krippendorff_alpha": krippendorff_alpha(units),
        "position_bias": bias,
        "swap_consistency": (sum(swap_consistent.values()) / n_swap) if n_swap else None,
        "torn_last_line": state.torn is not None,
    }


def _pair_agreement(
    judged: dict[str, dict[str, tuple[frozenset[str], dict[str, int]]]], units: dict[Any, dict[str, str]]
) -> list[dict[str, Any]]:
    """Per two annotators: items both judged with the same answers, their agreement, and Cohen's kappa."""
    kappas = {tuple(k["annotators"]): k for k in pair_kappas(units)}
    pair_counts: dict[tuple[str, str], list[float]] = defaultdict(list)
    for outcomes in judged.values():
        for a, b in itertools.combinations(sorted(outcomes), 2):
            (set_a, ranks_a), (set_b, ranks_b) = outcomes[a], outcomes[b]
            if set_a == set_b:  # the same answers were judged
                pair_counts[(a, b)].append(_agree(ranks_a, ranks_b))
    agreement = []
    for (a, b), scores in sorted(pair_counts.items()):
        kappa = kappas.get((a, b), {})
        agreement.append(
            {
                "annotators": [a, b],
                "overlap": len(scores),
                "agreement": sum(scores) / len(scores),
                "units": kappa.get("units", 0),
                "cohen_kappa": kappa.get("cohen_kappa"),
            }
        )
    return agreement


def _position_bias(
    mode: str,
    decisions: Counter[str],
    first_chosen: Counter[str],
    rank_first_best: Counter[str],
    rank_expected: dict[str, float],
) -> dict[str, Any]:
    n_all = sum(decisions.values())
    bias: dict[str, Any] = {"decisions": n_all}
    if mode == "pair":
        chosen_first = sum(first_chosen.values())
        bias.update(
            first_position_rate=chosen_first / n_all if n_all else None,
            expected=0.5,
            p_value=_p_value_half(chosen_first, n_all),
        )
    elif n_all:
        bias.update(
            first_shown_best_rate=sum(rank_first_best.values()) / n_all,
            expected=sum(rank_expected.values()) / n_all,
        )
    return bias


def label_stats(path: str | Path) -> dict[str, Any]:
    """`alignkit label stats`: the stats of a label file, read without changing it (a torn last line is
    warned about on stderr and counted as ``torn_last_line``)."""
    state = read_labels(path)
    if state.torn:
        console.warn(torn_message(state, repaired=False))
    return compute_stats(state)
