"""The label store: an append-only JSONL file shared by `alignkit label` and `alignkit judge`.

Every judgement is one line, appended, flushed and ``os.fsync``-ed before the UI moves on, so a crash
(even ``kill -9``) loses nothing that was confirmed. Nothing is ever rewritten: *undo* appends a
tombstone row naming the row it cancels, and readers apply the tombstones.

Rows (one JSON object per line; ``event`` says which)::

    label  a judgement. Pair mode: TRL conversational preference fields ``prompt``, ``chosen``,
           ``rejected``; rank mode: ``prompt``, ``responses`` (in shown order), ``ranks`` (0 = best).
    tie    pair mode, or rank mode with every answer equal: ``tied`` = ``{"prompt", "responses"}`` (shown
           order). Nested, so that no loader format matches the row: loaders never train on a tie.
    skip   the item was passed over (``reason``: ``cant_judge`` when the person could not tell, from the web
           page; for judge rows: inconsistent, unparsed).
    undo   cancels the row whose ``id`` is in ``undoes``.

Every row also has ``id`` (unique), ``item_id`` (hash of prompt + answers, see `alignkit.feedback.items`),
``dataset`` (fingerprint of the candidates file), ``mode`` (pair / rank), ``annotator`` and ``timestamp``
(UTC, ISO 8601). Label rows add ``shown_order`` (answer indexes in the order shown), ``choice`` (pair: the
shown position chosen, 1 or 2) or ``order`` (rank: what was typed), and ``tie``. Rows of people add
``seconds`` (how long the item was on screen before the judgement) and ``ui`` (``terminal`` or ``web``);
rows from the web page add ``item_position`` (the item's place, from 1, in that annotator's shuffled order).

Reading (for training, stats and resuming) lives in `alignkit.data.labels`: `label_items` yields the effective label rows (tombstones applied, ties/skips left out) in the
loader's item shape, and `read_label_records` returns them as validated `Record`s. A generic
`load_records(LABELS.jsonl, skip_invalid=True)` also works (tie/skip/undo rows are skipped as invalid), but
it cannot see tombstones: an undone label would be read.

Recovery: only the last line can be torn by a crash. Opening the store for writing moves the torn bytes to
``LABELS.jsonl.torn`` and truncates the file to the last complete line (and says so); readers just ignore it.
A bad line anywhere else is an error naming FILE:LINE.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Container
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.data.labels import EVENTS, LabelState, parse_label_bytes, torn_message
from alignkit.errors import UserError


# ---------------------------------------------------------------------------------------- writing
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise UserError(
            f"{path} is open in another `alignkit label` or `alignkit judge` process; wait for it to finish "
            "or write to another --output"
        ) from None


class LabelStore:
    """An open label file: `append` makes a row durable before it returns.

    Open it with `LabelStore.open`; it holds an exclusive lock (one writer per file) until `close`.
    """

    def __init__(self, path: Path, fd: int, state: LabelState, dataset: str, mode: str):
        self.path, self._fd, self.state, self.dataset, self.mode = path, fd, state, dataset, mode

    @classmethod
    def open(cls, path: str | Path, dataset: str, mode: str, append: bool = False) -> LabelStore:
        """Open (or create) ``path`` for appending judgements of ``dataset`` in ``mode``.

        Repairs a torn last line (with a warning). Raises `UserError` when the file holds labels of another
        dataset (unless ``append``), of another mode, or is not a label file at all.
        """
        p = Path(path)
        if p.is_dir():
            raise UserError(f"--output {p} is a directory; give a file name such as {p / 'labels.jsonl'}")
        p.parent.mkdir(parents=True, exist_ok=True)
        existed = p.exists()
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            _lock(fd, p)
            with open(p, "rb") as f:
                data = f.read()
            state = parse_label_bytes(data, str(path))
            if state.torn is not None:
                with open(f"{p}.torn", "ab") as backup:
                    backup.write(data[state.torn.offset :])
                    backup.flush()
                    os.fsync(backup.fileno())
                os.ftruncate(fd, state.torn.offset)
                os.fsync(fd)
                console.warn(torn_message(state, repaired=True))
            elif state.needs_newline:
                _write_all(fd, b"\n")
                os.fsync(fd)
            cls._check_compatible(state, p, dataset, mode, append)
            if not existed:
                _fsync_dir(p.parent.resolve())  # make the new file's name durable too
        except BaseException:
            os.close(fd)
            raise
        return cls(p, fd, state, dataset, mode)

    @staticmethod
    def _check_compatible(state: LabelState, path: Path, dataset: str, mode: str, append: bool) -> None:
        if not state.rows:
            return
        other_modes = state.modes - {mode}
        if other_modes:
            raise UserError(
                f"{path} holds {'/'.join(sorted(other_modes))}-mode labels; a file holds one mode (the loaders read "
                f"one kind per file): write {mode}-mode labels to another --output"
            )
        if dataset not in state.datasets and not append:
            raise UserError(
                f"{path} holds labels of another dataset (fingerprint {', '.join(sorted(state.datasets))}, this "
                f"one is {dataset}); pass --append to add to it anyway, or choose another --output"
            )

    def append(self, event: str, item_id: str, annotator: str, **fields: Any) -> dict[str, Any]:
        """Append one row and fsync it; return the row (with its ``id``)."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        row: dict[str, Any] = {
            "event": event,
            "id": uuid.uuid4().hex,
            "item_id": item_id,
            "dataset": self.dataset,
            "mode": self.mode,
            "annotator": annotator,
            "timestamp": _now(),
            **fields,
        }
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)  # durable before anyone is told it was saved
        except OSError as e:  # a full disk names no file: name the label file (open repairs a torn line)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        last_line = self.state.rows[-1][0] if self.state.rows else 0
        self.state.add(last_line + 1, row)
        return row

    def undo_last(self, annotator: str, item_ids: Container[str] | None = None) -> dict[str, Any] | None:
        """Cancel ``annotator``'s latest live judgement (of ``item_ids``) with a tombstone; return it."""
        target = self.state.last_judgement(annotator, item_ids)
        if target is None:
            return None
        self.append("undo", str(target["item_id"]), annotator, undoes=target["id"])
        return target

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------- the fields of a judgement
# One builder per kind of judgement, shared by the terminal UI (`alignkit.feedback.label`) and the web page
# (`alignkit.feedback.web.desk`), so that both write the same rows. ``order`` is `shown_order`: indexes into
# ``item.answers`` in the order shown.
CANT_JUDGE = "cant_judge"  # the ``reason`` of a skip row: the person could not tell which answer is better


def choice_fields(item: Any, order: tuple[int, ...] | list[int], position: int) -> dict[str, Any]:
    """A pair-mode ``label`` row's fields: the answer shown at ``position`` (0 or 1) is the better one."""
    from alignkit.feedback.items import conv_json

    return {
        "prompt": conv_json(item.prompt),
        "chosen": conv_json(item.answers[order[position]]),
        "rejected": conv_json(item.answers[order[1 - position]]),
        "shown_order": list(order),
        "choice": position + 1,
        "tie": False,
    }


def rank_fields(item: Any, order: tuple[int, ...] | list[int], groups: list[list[int]]) -> dict[str, Any]:
    """A rank-mode ``label`` row's fields from ``groups`` of shown positions, best first (ties share one)."""
    from alignkit.feedback.items import conv_json

    return {
        "prompt": conv_json(item.prompt),
        "responses": [conv_json(item.answers[i]) for i in order],
        "ranks": ranks_from_groups(groups, len(order)),
        "shown_order": list(order),
        "order": " ".join("=".join(str(p + 1) for p in g) for g in groups),
        "tie": False,
    }


def ranks_from_groups(groups: list[list[int]], k: int) -> list[int]:
    """Rank of each shown position (0 = best; tied positions share a rank)."""
    ranks = [0] * k
    for rank, group in enumerate(groups):
        for position in group:
            ranks[position] = rank
    return ranks


def tie_fields(item: Any, order: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """A ``tie`` row's fields (every shown answer equally good)."""
    return {"tied": tied_answers(item, order), "shown_order": list(order), "choice": None, "tie": True}


def tied_answers(item: Any, order: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """What a tie row keeps: ``{"prompt", "responses"}`` (shown order), nested under ``tied``.

    Nested, because a tie must not look like training data to any loader: top-level ``prompt`` would make
    it a prompt record, ``responses`` + ``ranks`` a ranking (and a file with many ties would be detected as
    that format, hiding its labels).
    """
    from alignkit.feedback.items import conv_json

    return {"prompt": conv_json(item.prompt), "responses": [conv_json(item.answers[i]) for i in order]}
