"""The labelling logic behind the web page, without HTTP: what each annotator sees, and their judgements.

A `Desk` holds the open `LabelStore` and, per annotator, the queue of assigned items not judged yet (in the
shuffled order of `alignkit.feedback.web.team`). Every method takes one lock, so the server's worker
threads never interleave: a judgement is checked (the item is one of this annotator's, not judged yet),
appended and fsync-ed, and only then taken off the queue and confirmed. That is what makes a judgement
impossible to lose once the page was told it was saved, and impossible to record twice (a second submit of
the same item, from a retry or another tab, is refused with `Refused` 409).

Rows are built by the same functions as the terminal UI's (`alignkit.feedback.store`), plus ``seconds``
(measured by the page: from the item appearing to the decision), ``item_position`` (the item's place in
this annotator's order, from 1) and ``ui: "web"``. Can't judge is a ``skip`` row with
``reason: "cant_judge"``: not trained on, counted apart by `alignkit label stats` and `aggregate`.

A restart resumes: the queues are rebuilt from the label file (items judged or skipped are done).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from alignkit.feedback.items import Item, conv_json, shown_order
from alignkit.feedback.label import parse_rank_order
from alignkit.feedback.store import CANT_JUDGE, LabelStore, choice_fields, rank_fields, tie_fields

ACTIONS = ("choose", "rank", "tie", "skip", "cant_judge")
MAX_SECONDS = 7 * 24 * 3600.0


class Refused(Exception):
    """A request the desk will not carry out: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Desk:
    """Thread-safe: the web server's threads call `view`, `judge` and `undo` at will."""

    def __init__(
        self,
        items: list[Item],
        store: LabelStore,
        assignment: dict[str, list[str]],
        mode: str = "pair",
        seed: int = 0,
        revisit_skipped: bool = False,
    ):
        self.by_id = {item.item_id: item for item in items}
        self.store, self.assignment, self.mode, self.seed = store, assignment, mode, seed
        self._lock = threading.Lock()
        self.queues: dict[str, list[str]] = {}
        self.saved: dict[str, int] = dict.fromkeys(assignment, 0)  # judgements written in this run
        for who, ids in assignment.items():
            done = store.state.done_items(who, include_skips=not revisit_skipped)
            self.queues[who] = [i for i in ids if i not in done]

    # ------------------------------------------------------------------ reading
    def shown(self, who: str, item: Item) -> tuple[int, ...]:
        return shown_order(item, self.seed, 2 if self.mode == "pair" else None, annotator=who)

    def view(self, who: str, message: str = "") -> dict[str, Any]:
        """What ``who``'s page shows: progress and the current item (None when all are done)."""
        with self._lock:
            return self._view(who, message)

    def _view(self, who: str, message: str) -> dict[str, Any]:
        queue, total = self.queues[who], len(self.assignment[who])
        item = None
        if queue:
            current = self.by_id[queue[0]]
            order = self.shown(who, current)
            item = {
                "item_id": current.item_id,
                "position": self.assignment[who].index(current.item_id) + 1,
                "prompt": conv_json(current.prompt),
                "answers": [conv_json(current.answers[i]) for i in order],
                "shown_order": list(order),
            }
        assigned = set(self.assignment[who])
        return {
            "annotator": who,
            "mode": self.mode,
            "done": total - len(queue),
            "total": total,
            "remaining": len(queue),
            "item": item,
            "can_undo": self.store.state.last_judgement(who, assigned) is not None,
            "message": message,
        }

    # ------------------------------------------------------------------ writing
    def judge(self, who: str, request: dict[str, Any]) -> dict[str, Any]:
        """Record ``who``'s judgement (``request``: item_id, action, choice / order, shown_order, seconds)."""
        action = request.get("action")
        if action not in ACTIONS:
            raise Refused(400, f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        item_id = request.get("item_id")
        with self._lock:
            if item_id not in self.queues[who]:
                done = item_id in self.assignment[who]
                raise Refused(
                    409,
                    "this item is already judged (in another tab?): here is the next one"
                    if done
                    else "this item is not one of yours",
                )
            item = self.by_id[str(item_id)]
            order = self.shown(who, item)
            if request.get("shown_order") is not None and request["shown_order"] != list(order):
                raise Refused(409, "the answers were shown in another order: reload the page")
            event, fields, message = self._fields(action, item, order, request)
            extra = {"seconds": _seconds(request.get("seconds")), "item_position": self._position(who, item)}
            self.store.append(event, item.item_id, who, **fields, **extra, ui="web")  # fsync-ed here
            self.queues[who].remove(item.item_id)
            if event != "skip":
                self.saved[who] += 1
            return self._view(who, message)

    def _fields(
        self, action: str, item: Item, order: tuple[int, ...], request: dict[str, Any]
    ) -> tuple[str, dict[str, Any], str]:
        if action == "tie":
            return "tie", tie_fields(item, order), "saved: tie"
        if action in ("skip", "cant_judge"):
            reason = {"reason": CANT_JUDGE} if action == "cant_judge" else {}
            return "skip", {"shown_order": list(order), **reason}, f"saved: {action.replace('_', ' ')}"
        if action == "choose":
            if self.mode != "pair" or request.get("choice") not in (1, 2):
                raise Refused(400, "choose needs choice 1 or 2 (pair mode)")
            position = int(request["choice"]) - 1
            return "label", choice_fields(item, order, position), f"saved: {position + 1} is better"
        if self.mode != "rank":
            raise Refused(400, "rank is for --mode rank")
        try:
            groups = parse_rank_order(str(request.get("order", "")), len(order))
        except ValueError as e:
            raise Refused(400, str(e)) from None
        if len(groups) == 1:
            return "tie", tie_fields(item, order), "saved: all equal (a tie)"
        return "label", rank_fields(item, order, groups), "saved"

    def undo(self, who: str) -> dict[str, Any]:
        """Cancel ``who``'s latest judgement (a tombstone row); its item comes back first."""
        with self._lock:
            target = self.store.undo_last(who, set(self.assignment[who]))
            if target is None:
                return self._view(who, "nothing to undo")
            item_id = str(target["item_id"])
            if item_id in self.queues[who]:
                self.queues[who].remove(item_id)
            self.queues[who].insert(0, item_id)
            if target["event"] != "skip":
                self.saved[who] -= 1
            return self._view(who, f"undone: the {target['event']} of this item; judge it again")

    def _position(self, who: str, item: Item) -> int:
        return self.assignment[who].index(item.item_id) + 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                who: {
                    "saved_this_session": self.saved[who],
                    "done": len(self.assignment[who]) - len(self.queues[who]),
                    "total": len(self.assignment[who]),
                }
                for who in self.assignment
            }


def _seconds(value: Any) -> float | None:
    """The page's measured seconds, when it is a plausible number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return round(value, 3) if math.isfinite(value) and 0 <= value <= MAX_SECONDS else None
