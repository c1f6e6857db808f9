"""`alignkit label aggregate`: the majority vote of a label file, as a preference file to train on.

A label file of several annotators holds several judgements of one item (``--overlap``), which may
disagree; training on all of them would count an item once per annotator and teach both sides of a split.
This reads the effective judgements (tombstones applied, one per annotator and item) as the units of
`alignkit.feedback.agreement` (one per compared pair of answers) and keeps, per unit, the value with the
most votes:

* an answer wins: one preference row ``{"prompt", "chosen", "rejected"}`` (TRL conversational), with the
  ``item_id``, the ``votes`` (for chosen, rejected, tie) and the ``annotators`` as extra fields;
* the tie wins, or the two top values have as many votes: dropped, counted (``dropped_tie``,
  ``dropped_split``);
* fewer votes than ``--min-votes``: dropped, counted.

Can't judge and skips are not votes (counted apart; an item with nothing else has no vote at all). A rank-
mode file votes per pair of answers, so its output is pairs too. The output is written atomically, in the
order of the units (item id, then answers), and read by `alignkit rm`, `dpo` and `kto` like any preference
file (`alignkit.data`'s trl-preference format).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.data.labels import is_label_file, read_labels, torn_message
from alignkit.errors import UserError
from alignkit.feedback.agreement import judged_units, plurality, row_answers
from alignkit.feedback.config import LabelAggregateConfig
from alignkit.feedback.items import answer_hash
from alignkit.feedback.store import CANT_JUDGE
from alignkit.files import atomic_write_text


def majority_preferences(
    rows: list[dict[str, Any]], min_votes: int = 1
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(preference rows, counts) from the effective rows of a label file (see the module docstring)."""
    answers: dict[str, Any] = {}
    prompts: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    items = set()
    for row in rows:
        items.add(str(row["item_id"]))
        if row["event"] == "skip":
            counts["cant_judge" if row.get("reason") == CANT_JUDGE else "skips"] += 1
            continue
        prompts[str(row["item_id"])] = (
            row["prompt"] if "prompt" in row else (row.get("tied") or {}).get("prompt")
        )
        for answer in row_answers(row):
            answers[answer_hash(answer)] = answer
    units = judged_units(rows)
    out = []
    for unit in sorted(units):
        values = units[unit]
        votes = Counter(values.values())
        if sum(votes.values()) < min_votes:
            counts["dropped_few_votes"] += 1
            continue
        winner = plurality(values.values())
        if winner is None or winner == "=":
            counts["dropped_split" if winner is None else "dropped_tie"] += 1
            continue
        item, first, second = unit
        chosen, rejected = (first, second) if winner == "<" else (second, first)
        out.append(
            {
                "prompt": prompts[item],
                "chosen": answers[chosen],
                "rejected": answers[rejected],
                "item_id": item,
                "votes": {
                    "chosen": votes[winner],
                    "rejected": votes[">" if winner == "<" else "<"],
                    "tie": votes["="],
                },
                "annotators": sorted(values),
            }
        )
    counts["comparisons"] = len(units)
    counts["written"] = len(out)
    counts["items_without_vote"] = len(items - {unit[0] for unit in units})
    return out, counts


def aggregate_labels(cfg: LabelAggregateConfig) -> dict[str, Any]:
    """`alignkit label aggregate`: write the majority vote of ``cfg.labels`` to ``cfg.output``."""
    assert cfg.output
    source, target = Path(cfg.labels), Path(cfg.output)
    if target.exists() and (target.resolve() == source.resolve() or is_label_file(target)):
        raise UserError(
            f"--output {target} is a label file; aggregate writes a new preference file: choose another name"
        )
    state = read_labels(source)
    if state.torn:
        console.warn(torn_message(state, repaired=False))
    rows, counts = majority_preferences([row for _, row in state.effective()], cfg.min_votes)
    summary = {
        "labels": str(source),
        "output": str(target),
        **{
            key: counts[key]
            for key in (
                "written",
                "comparisons",
                "dropped_tie",
                "dropped_split",
                "dropped_few_votes",
                "cant_judge",
                "skips",
                "items_without_vote",
            )
        },
    }
    if not rows:
        raise UserError(
            f"{source}: no comparison has a majority ({summary['comparisons']} voted on: {summary['dropped_tie']} "
            f"ties, {summary['dropped_split']} split, {summary['dropped_few_votes']} with fewer than --min-votes "
            f"{cfg.min_votes}); nothing written to {target}"
        )
    atomic_write_text(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return summary
