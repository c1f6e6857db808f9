"""Agreement between annotators, on the units they share: Cohen's kappa per pair, Krippendorff's alpha
overall, and each annotator's agreement with the majority of the others.

**Units.** One unit is one comparison of two answers of one item: ``(item_id, answer, answer)``, the two
answers by content hash, sorted. A pair-mode judgement gives one unit, a rank-mode judgement one per pair of
its answers, a tie every pair as a tie. The value says which answer won: ``"<"`` (the first hash),
``">"`` (the second) or ``"="`` (a tie; a category of its own). Can't judge and skips are no judgement:
missing. The answers shown left and right differ between annotators (the web page shuffles per annotator),
so a unit names answers, never positions; and two annotators shown different pairs of a 3-answer item share
no unit.

**Cohen's kappa** (J. Cohen, "A coefficient of agreement for nominal scales", 1960), per two annotators
over the units both judged: ``kappa = (p_o - p_e) / (1 - p_e)``, where ``p_o`` is the fraction of shared
units with the same value and ``p_e = sum_c p_a(c) p_b(c)`` the agreement expected from each one's own
rates of the three values on those units. None when ``p_e = 1`` (both always gave one same value: kappa
is undefined), and for no shared unit. It is a few lines of arithmetic, written here rather than taken from
scikit-learn (``cohen_kappa_score`` computes the same) to avoid that dependency.

**Krippendorff's alpha** (nominal; K. Krippendorff, *Content Analysis*, 2004, ch. 11), over everyone at once
from the ``krippendorff`` package: it allows any number of annotators per unit and missing values (Fleiss'
kappa needs the same number of raters on every item). Units judged once are left out (they carry no
agreement); None when no unit has two judgements or every judgement has the same value.

**Agreement with the majority**, per annotator, leave-one-out: over each of their units that others judged
too, the fraction where their value equals the others' plurality (with one other annotator: that one's
value); units where the others split evenly are left out. Without leaving oneself out, a person's own vote
would make the majority agree with them (with two annotators it would always be 1).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from alignkit.feedback.items import answer_hash

Unit = tuple[str, str, str]  # (item_id, answer hash, answer hash), the hashes sorted
VALUES = ("<", ">", "=")


def row_answers(row: dict[str, Any]) -> list[Any]:
    """The answers (as written: lists of messages) a label or tie row judged."""
    if "chosen" in row:
        return [row["chosen"], row["rejected"]]
    if row["event"] == "tie":
        return list((row.get("tied") or {}).get("responses") or [])
    return list(row.get("responses") or [])


def row_ranks(row: dict[str, Any]) -> dict[str, int]:
    """Rank per answer hash (0 = best, equal = tie) of a label or tie row."""
    answers = [answer_hash(a) for a in row_answers(row)]
    if row["event"] == "tie":
        return dict.fromkeys(answers, 0)
    if "chosen" in row:
        return {answers[0]: 0, answers[1]: 1}
    return dict(zip(answers, row.get("ranks", [0] * len(answers)), strict=False))


def row_units(row: dict[str, Any]) -> dict[Unit, str]:
    """The units a label or tie row judged, with their values."""
    ranks = row_ranks(row)
    out = {}
    for a, b in itertools.combinations(sorted(ranks), 2):
        out[(str(row["item_id"]), a, b)] = "<" if ranks[a] < ranks[b] else ">" if ranks[a] > ranks[b] else "="
    return out


def judged_units(rows: Iterable[dict[str, Any]]) -> dict[Unit, dict[str, str]]:
    """unit -> annotator -> value, from effective rows (skips and undo rows are ignored)."""
    units: dict[Unit, dict[str, str]] = defaultdict(dict)
    for row in rows:
        if row["event"] in ("label", "tie"):
            for unit, value in row_units(row).items():
                units[unit][str(row.get("annotator", ""))] = value
    return dict(units)


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two annotators' values on the same units (see the module docstring)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    rate_a, rate_b = Counter(a), Counter(b)
    p_e = sum(rate_a[c] * rate_b[c] for c in rate_a) / (n * n)
    if math.isclose(p_e, 1.0):
        return None
    return (p_o - p_e) / (1 - p_e)


def pair_kappas(units: dict[Unit, dict[str, str]]) -> list[dict[str, Any]]:
    """For every two annotators with a shared unit: units, observed agreement and Cohen's kappa."""
    shared: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for values in units.values():
        for x, y in itertools.combinations(sorted(values), 2):
            shared[(x, y)][0].append(values[x])
            shared[(x, y)][1].append(values[y])
    out = []
    for (x, y), (va, vb) in sorted(shared.items()):
        agree = sum(p == q for p, q in zip(va, vb, strict=True)) / len(va)
        out.append(
            {"annotators": [x, y], "units": len(va), "agreement": agree, "cohen_kappa": cohen_kappa(va, vb)}
        )
    return out


def krippendorff_alpha(units: dict[Unit, dict[str, str]]) -> float | None:
    """Krippendorff's alpha (nominal) over every unit judged at least twice (see the module docstring)."""
    import krippendorff
    import numpy as np

    rated = [values for values in units.values() if len(values) >= 2]
    if not rated:
        return None
    names = sorted({who for values in rated for who in values})
    row_of = {who: i for i, who in enumerate(names)}
    data = np.full((len(names), len(rated)), np.nan)
    for column, values in enumerate(rated):
        for who, value in values.items():
            data[row_of[who], column] = VALUES.index(value)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = float(
            krippendorff.alpha(reliability_data=data, value_domain=[0, 1, 2], level_of_measurement="nominal")
        )
    return alpha if math.isfinite(alpha) else None


def plurality(values: Iterable[str]) -> str | None:
    """The value with more votes than any other, or None when the top two are equal (or no vote)."""
    top = Counter(values).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def majority_agreement(units: dict[Unit, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Per annotator: ``rate`` of agreement with the others' plurality, over ``units`` (leave-one-out)."""
    hits: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    for values in units.values():
        for who, value in values.items():
            others = [v for w, v in values.items() if w != who]
            majority = plurality(others)
            if majority is not None:
                counted[who] += 1
                hits[who] += value == majority
    return {who: {"rate": hits[who] / counted[who], "units": counted[who]} for who in sorted(counted)}
