"""Reading alignkit's label files: the append-only JSONL event logs that `alignkit label` and `alignkit judge`
write (`alignkit.feedback.store` writes them and documents every row).

A loader reads a label file through `label_items`: tombstones (undo rows) applied, ties and skips left out,
so only the judgements that count become training records. Only the last line can be torn by a crash;
readers ignore it (the writer repairs it), and a bad line anywhere else is an error naming FILE:LINE.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.formats import get_format
from alignkit.errors import DataError

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
    out = []
    for source, row, _ in label_items(path):
        fmt = get_format("trl-preference" if "chosen" in row else "ranking")
        out.extend(rec.validate() for rec in fmt.parse(row, source))
    return out
