"""The label store: an append-only JSONL file shared by `alignkit label` and `alignkit judge`.

Every judgement is one line, appended, flushed and ``os.fsync``-ed before the UI moves on, so a crash
(even ``kill -9``) loses nothing that was confirmed. Nothing is ever rewritten: *undo* appends a
tombstone row naming the row it cancels, and readers apply the tombstones.

Rows (one JSON object per line; ``event`` says which)::

    label  a judgement. Pair mode: TRL conversational preference fields ``prompt``, ``chosen``,
           ``rejected``; rank mode: ``prompt``, ``responses`` (in shown order), ``ranks`` (0 = best).
    tie    pair mode, or rank mode with every answer equal: ``tied`` = ``{"prompt", "responses"}`` (shown
           order). Nested, so that no loader format matches the row: loaders never train on a tie.
    skip   the item was passed over (``reason`` for judge rows: inconsistent, unparsed).
    undo   cancels the row whose ``id`` is in ``undoes``.

Every row also has ``id`` (unique), ``item_id`` (hash of prompt + answers, see `alignkit.feedback.items`),
``dataset`` (fingerprint of the candidates file), ``mode`` (pair / rank), ``annotator`` and ``timestamp``
(UTC, ISO 8601). Label rows add ``shown_order`` (answer indexes in the order shown), ``choice`` (pair: the
shown position chosen, 1 or 2) or ``order`` (rank: what was typed), and ``tie``.

Training: `label_items` yields the effective label rows (tombstones applied, ties/skips left out) in the
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
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.errors import DataError, UserError

EVENTS = ("label", "tie", "skip", "undo")
JUDGEMENTS = ("label", "tie", "skip")  # rows that undo can cancel
REQUIRED_KEYS = ("event", "id", "item_id")


@dataclass
class TornTail:
    line: int  # 1-based line number where the torn tail starts
    offset: int  # byte offset of that line (the file is cut back to here)
    size: int  # bytes in the torn tail


@dataclass
class LabelState:
    """Every row of a label file, with tombstones applied incrementally.

    ``effective[(annotator, item_id)]`` is the judgement that counts for that annotator (the last one not
    undone); ``stacks[annotator]`` lists that annotator's live judgement ids, oldest first (what undo pops).
    """

    path: str
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line, row), file order
    torn: TornTail | None = None
    needs_newline: bool = False  # the last row is complete but its newline was never written
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    undone: set[str] = field(default_factory=set)
    live: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (annotator, item) -> row ids
    stacks: dict[str, list[str]] = field(default_factory=dict)  # annotator -> live judgement ids
    line_of: dict[str, int] = field(default_factory=dict)

    def add(self, line: int, row: dict[str, Any]) -> None:
        self.rows.append((line, row))
        rid = str(row["id"])
        self.by_id[rid] = row
        self.line_of[rid] = line
        annotator = str(row.get("annotator", ""))
        if row["event"] == "undo":
            target = str(row.get("undoes", ""))
            old = self.by_id.get(target)
            if old is None or target in self.undone:
                return  # undoing something unknown changes nothing
            self.undone.add(target)
            key = (str(old.get("annotator", "")), str(old["item_id"]))
            with contextlib.suppress(ValueError):
                self.live.get(key, []).remove(target)
            with contextlib.suppress(ValueError):
                self.stacks.get(key[0], []).remove(target)
            return
        self.live.setdefault((annotator, str(row["item_id"])), []).append(rid)
        self.stacks.setdefault(annotator, []).append(rid)

    # ------------------------------------------------------------------ queries
    @property
    def datasets(self) -> set[str]:
        return {str(r["dataset"]) for _, r in self.rows if r.get("dataset")}

    @property
    def modes(self) -> set[str]:
        return {str(r["mode"]) for _, r in self.rows if r.get("mode")}

    def effective(self) -> list[tuple[int, dict[str, Any]]]:
        """(line, row) of the judgement that counts per (annotator, item), in file order."""
        ids = {ids[-1] for ids in self.live.values() if ids}
        return sorted(((self.line_of[i], self.by_id[i]) for i in ids), key=lambda t: t[0])

    def done_items(self, annotator: str, include_skips: bool = True) -> set[str]:
        done = set()
        for (who, item), ids in self.live.items():
            if who == annotator and ids and (include_skips or self.by_id[ids[-1]]["event"] != "skip"):
                done.add(item)
        return done

    def last_judgement(self, annotator: str, item_ids: Container[str] | None = None) -> dict[str, Any] | None:
        """``annotator``'s latest live judgement (of one of ``item_ids`` when given)."""
        for rid in reversed(self.stacks.get(annotator) or []):
            row = self.by_id[rid]
            if item_ids is None or row["item_id"] in item_ids:
                return row
        return None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(EVENTS, 0)
        for _, row in self.rows:
            out[row["event"]] += 1
        return out


# ---------------------------------------------------------------------------------------- reading
def _is_blank(line: bytes) -> bool:
    return not line.strip(b" \t\r\n\x00")


def _check_row(raw: Any, where: str, first: bool) -> dict[str, Any]:
    if (
        not isinstance(raw, dict)
        or any(k not in raw for k in REQUIRED_KEYS)
        or raw.get("event") not in EVENTS
    ):
        what = (
            "is not an alignkit labels file (written by `alignkit label` or `alignkit judge`)"
            if first
            else ("is not an alignkit label row")
        )
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise DataError(
            f"{what}: expected 'event' ({'/'.join(EVENTS)}), 'id' and 'item_id', got {keys}", where
        )
    return raw


def parse_label_bytes(data: bytes, name: str) -> LabelState:
    """A `LabelState` from a label file's bytes. A torn last line is noted in ``torn``, not raised."""
    state = LabelState(path=name)
    lines = data.splitlines(keepends=True)
    offset = 0
    parsed: list[tuple[int, int, dict[str, Any] | None, str | None]] = []  # (line, offset, row, error)
    for number, line in enumerate(lines, 1):
        start, offset = offset, offset + len(line)
        if _is_blank(line):
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            parsed.append((number, start, row, None))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            parsed.append((number, start, None, getattr(e, "msg", str(e))))
    first = True
    for index, (number, start, row, error) in enumerate(parsed):
        where = f"{name}:{number}"
        if error is not None:
            if index == len(parsed) - 1:  # only the last line can be torn by a crash
                state.torn = TornTail(number, start, len(data) - start)
                break
            raise DataError(
                f"malformed JSON ({error}); only a torn last line is repaired automatically: fix or delete "
                "this line",
                where,
            )
        state.add(number, _check_row(row, where, first))
        first = False
    if state.torn is None and data and not data.endswith(b"\n") and not _is_blank(lines[-1]):
        state.needs_newline = True
    return state


def read_labels(path: str | Path) -> LabelState:
    """Read a label file without changing it (a torn last line is ignored; ``state.torn`` says so)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such label file: {p}")
    return parse_label_bytes(p.read_bytes(), str(path))


def torn_message(state: LabelState, repaired: bool) -> str:
    assert state.torn is not None
    kept = len(state.rows)
    where = f"{state.path}:{state.torn.line}"
    if repaired:
        return (
            f"{where}: the last line was cut off by a crash ({state.torn.size} bytes, not valid JSON); "
            f"kept the {kept} rows before it and moved the cut-off bytes to {state.path}.torn"
        )
    return f"{where}: ignoring a cut-off last line ({state.torn.size} bytes; a crash during a write); {kept} rows read"


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
        _write_all(self._fd, data)
        os.fsync(self._fd)  # durable before anyone is told it was saved
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


def tied_answers(item: Any, order: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """What a tie row keeps: ``{"prompt", "responses"}`` (shown order), nested under ``tied``.

    Nested, because a tie must not look like training data to any loader: top-level ``prompt`` would make
    it a prompt record, ``responses`` + ``ranks`` a ranking (and a file with many ties would be detected as
    that format, hiding its labels).
    """
    from alignkit.feedback.items import conv_json

    return {"prompt": conv_json(item.prompt), "responses": [conv_json(item.answers[i]) for i in order]}


# ------------------------------------------------------------------------------------ for training
def label_items(path: str | Path, name: str | None = None) -> Iterator[tuple[str, dict[str, Any], None]]:
    """(``FILE:LINE``, row, None) of each effective label row: what a loader should parse.

    Undone rows, ties and skips are left out; the row keeps its extra keys (they become `Record.meta`).
    The shape matches the items of `alignkit.data.load`, so the loader can read a label file through this.
    """
    state = read_labels(path)
    name = name or str(path)
    for line, row in state.effective():
        if row["event"] == "label":
            yield f"{name}:{line}", row, None


def is_label_file(path: str | Path) -> bool:
    """Does the first non-blank line look like a label-store row?"""
    try:
        with open(path, "rb") as f:
            for line in f:
                if _is_blank(line):
                    continue
                row = json.loads(line.decode("utf-8"))
                return (
                    isinstance(row, dict) and all(k in row for k in REQUIRED_KEYS) and row["event"] in EVENTS
                )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return False


def read_label_records(path: str | Path) -> list:
    """The effective labels as validated `Record`s (preference for pair mode, ranking for rank mode)."""
    from alignkit.data.formats import get_format

    out = []
    for source, row, _ in label_items(path):
        fmt = get_format("trl-preference" if "chosen" in row else "ranking")
        out.extend(rec.validate() for rec in fmt.parse(row, source))
    return out
