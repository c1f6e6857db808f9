"""The only module that imports rich: messages, progress bars, tables.

Human-facing output goes to stderr, so that ``--json`` summaries on stdout stay
machine-readable. ``set_quiet(True)`` silences progress bars and info lines
(warnings and errors still print).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

_err = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def error(message: str) -> None:
    """One line, no traceback: ``error: FILE:LINE: what is wrong``."""
    _err.print(f"[bold red]error:[/] {escape(message)}")


def warn(message: str) -> None:
    _err.print(f"[bold yellow]warning:[/] {escape(message)}")


def info(message: str) -> None:
    if not _quiet:
        _err.print(escape(message))


def rule(title: str) -> None:
    if not _quiet:
        _err.rule(escape(title))


def print_json(obj: Any) -> None:
    """One JSON object on one line on stdout (plain, no colour)."""
    sys.stdout.write(json.dumps(obj, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A simple table on stderr (skipped when quiet); words are never split (see `_fit_widths`)."""
    if _quiet:
        return
    cells = [[_fmt(v) for v in r] for r in rows]
    widths, width = _fit_widths(list(columns), cells, frame=3 * len(columns) + 1, console=_err)
    t = Table(title=title, title_justify="left", header_style="bold")
    for c, w in zip(columns, widths, strict=True):
        t.add_column(c, width=w, overflow="fold")
    for r in cells:
        t.add_row(*(Text(v) for v in r))
    _print_table(t, width)


def key_values(title: str | None, items: Sequence[tuple[str, Any]]) -> None:
    """Two aligned columns: name, value (skipped when quiet); words are never split (see `_fit_widths`)."""
    if _quiet:
        return
    cells = [[str(k), _fmt(v)] for k, v in items]
    widths, width = _fit_widths(None, cells, frame=2, console=_err)
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", width=widths[0], overflow="fold")
    t.add_column(width=widths[1], overflow="fold")
    for k, v in cells:
        t.add_row(Text(k), Text(v))
    _print_table(t, width)


def _print_table(t: Table, width: int | None) -> None:
    """Print ``t`` on stderr; at ``width`` columns when that is wider than the console (not a terminal: the
    table whole rather than squeezed, which would split words)."""
    if width is None or width <= _err.width:
        _err.print(t)
        return
    Console(file=_err.file, width=width, highlight=False, soft_wrap=True, no_color=_err.no_color).print(t)


SHORT_CELL = 16  # a column whose cells are all this short never wraps them (numbers, names, verdicts' words)


def _fit_widths(
    header: list[str] | None, rows: list[list[str]], frame: int, console: Console
) -> tuple[list[int], int | None]:
    """Column widths (content only) for a table of ``rows`` under ``header``, and the width to print it at.

    Rich shrinks columns below their longest word when a table is wider than the console, and then folds
    words ("differen" / "ce"). Here every column gets at least its longest word (a short column: its longest
    cell, so "0.55 +- 0.05" stays on one line; its header may wrap at spaces), and the room left goes to the
    columns that want more, in proportion, so long texts wrap at spaces. ``frame`` is what borders and
    padding take. When even the narrowest layout is wider than the console: on a terminal rich folds as a
    last resort; elsewhere (a pipe, a file) the table is printed whole at the width it needs.
    """
    texts = [list(header)] + rows if header is not None else rows
    n = len(texts[0]) if texts else 0
    if n == 0:
        return [], None

    def words(text: str) -> int:
        return max((cell_len(w) for w in text.split()), default=0)

    def longest(text: str) -> int:
        return max((cell_len(line) for line in text.splitlines()), default=0)

    lows, highs = [], []
    for j in range(n):
        column = [r[j] for r in rows]
        high = max(longest(t[j]) for t in texts)
        low = max(words(t[j]) for t in texts)
        if column and max(longest(c) for c in column) <= SHORT_CELL:
            low = max(low, max(longest(c) for c in column))
        lows.append(max(1, low))
        highs.append(max(1, high, low))
    room = console.width - frame
    if sum(highs) <= room:
        return highs, None
    if sum(lows) >= room:
        return lows, (None if console.is_terminal else sum(lows) + frame)
    widths = list(lows)
    spare = room - sum(lows)
    wants = [h - lo for h, lo in zip(highs, lows, strict=True)]
    total = sum(wants)
    for j in range(n):
        widths[j] += min(wants[j], spare * wants[j] // total)
    left = room - sum(widths)
    for j in sorted(range(n), key=lambda j: wants[j] - (widths[j] - lows[j]), reverse=True)[:left]:
        widths[j] += 1
    return widths, None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class _RateColumn(ProgressColumn):
    """Items/s, or tokens/s when the task carries a ``tokens`` field."""

    def render(self, task) -> Text:  # type: ignore[override]
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        tokens = task.fields.get("tokens")
        if tokens:
            return Text(f"{tokens / elapsed:,.0f} tok/s", style="cyan")
        return Text(f"{task.completed / elapsed:.2f} {task.fields.get('unit', 'it')}/s", style="cyan")


class Tracker:
    """Handle returned by `progress`: ``advance(n, tokens=...)`` and ``set(**fields)``."""

    def __init__(self, progress: Progress | None, task_id: Any):
        self._p, self._id = progress, task_id
        self.tokens = 0
        self.start = time.perf_counter()

    def advance(self, n: float = 1, tokens: int = 0, **fields: Any) -> None:
        self.tokens += tokens
        if self._p is not None:
            self._p.update(self._id, advance=n, tokens=self.tokens, **fields)

    def set(self, **fields: Any) -> None:
        if self._p is not None:
            self._p.update(self._id, **fields)

    def describe(self, description: str) -> None:
        if self._p is not None:
            self._p.update(self._id, description=escape(description))


@contextmanager
def progress(
    description: str, total: float | None, unit: str = "it", status: bool = True
) -> Iterator[Tracker]:
    """A progress bar with ETA and items/s (or tokens/s) on stderr; silent when quiet.

    ``status`` shows a free-text field (e.g. the current loss) after the bar.
    """
    if _quiet:
        yield Tracker(None, None)
        return
    columns: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total is not None else TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        _RateColumn(),
    ]
    if status:
        columns.append(TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=_err, transient=False, refresh_per_second=4) as p:
        task = p.add_task(escape(description), total=total, unit=unit, tokens=0, status="")
        yield Tracker(p, task)


# ---------------------------------------------------------------------------------------------------------
# Label screen (`alignkit label`, alignkit.feedback.label): draws the lines `build_view` computes.
# Layout lives in feedback/label_view.py, logic in feedback/label.py; this section only turns (text, style)
# segments into output.
# ---------------------------------------------------------------------------------------------------------


class LabelScreen:
    """A full-screen view on the terminal (stdout): ``draw(lines)`` repaints it, ``size()`` measures it."""

    def __init__(self, file: Any = None):
        self._c = Console(file=file or sys.stdout, highlight=False, soft_wrap=False)

    def size(self) -> tuple[int, int]:
        """(columns, rows) of the terminal itself (the COLUMNS/LINES variables are not trusted here)."""
        import os
        import shutil

        try:
            s = os.get_terminal_size(self._c.file.fileno())
        except (OSError, ValueError, AttributeError):
            s = shutil.get_terminal_size()
        return s.columns, s.lines

    def draw(self, lines: Sequence[Sequence[tuple[str, str]]], size: tuple[int, int] | None = None) -> bool:
        """Clear the screen and print one terminal line per entry (each cropped to the width).

        ``size``: the (columns, rows) the lines were laid out for; when the terminal no longer has that
        size, nothing is drawn and the answer is False (lay out again: a frame for another size can push
        lines off the screen).
        """
        width, height = self.size()
        if size is not None and size != (width, height):
            return False
        self._c.width = width
        self._c.clear()
        for i, segments in enumerate(lines):
            text = Text(no_wrap=True, overflow="crop", end="")
            for chunk, style in segments:
                text.append(chunk, style=style or None)
            text.truncate(width, overflow="crop")
            self._c.print(text, end="" if i == len(lines) - 1 else "\n", no_wrap=True, crop=True)
        self._c.file.flush()
        return True


@contextmanager
def label_screen() -> Iterator[LabelScreen]:
    """The alternate screen with the cursor hidden, restored on exit (also on exceptions)."""
    screen = LabelScreen()
    screen._c.set_alt_screen(True)
    screen._c.show_cursor(False)
    try:
        yield screen
    finally:
        screen._c.show_cursor(True)
        screen._c.set_alt_screen(False)
        screen._c.file.flush()
