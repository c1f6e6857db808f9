"""`alignkit label`: a terminal UI in which people compare (pair) or order (rank) answers.

Three layers, so that tests can drive the logic without a terminal:

* `LabelSession`: a pure state machine. ``press(key)`` takes one key ("1", "t", "enter", "up", ...),
  appends the judgement to the `LabelStore` (fsync-ed before it returns) and moves on.
* `build_view(session, width, height)`: what the screen shows, as lines of (text, style) segments; side by
  side on wide terminals, stacked on narrow ones, a clear message when the terminal is too small.
* `run_label`: opens the store, puts the terminal in cbreak mode (`KeyReader`, restored on exit, exception,
  SIGTERM and SIGHUP), and loops draw -> key -> press. Drawing is `alignkit.console.label_screen`.

Keys, pair mode: ``1``/``2`` choose, ``t`` tie, ``s`` skip, ``u`` undo the last, ``q`` quit, arrows and
PgUp/PgDn scroll. Rank mode: type the shown numbers best first (``3 1 2 4``, or ``3124``; ``1=2`` ties
two answers) and Enter; ``t``, ``s``, ``u``, ``q`` as in pair mode.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import textwrap
import unicodedata
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from alignkit import console
from alignkit.data.records import Conversation
from alignkit.errors import UserError
from alignkit.feedback.config import LabelConfig, default_annotator, require_paths
from alignkit.feedback.items import Item, conv_json, load_candidates, shown_order
from alignkit.feedback.store import LabelStore, tied_answers

QUIT_KEYS = ("q", "Q", "\x03", "\x04", "eof")
SCROLL_KEYS = {"up": -1, "down": 1, "k": -1, "j": 1}
PAGE_KEYS = {"pgup": -1, "pgdn": 1}
RANK_INPUT = set("0123456789 =,")
MIN_WIDTH, MIN_HEIGHT = 40, 10
SIDE_BY_SIDE_MIN_WIDTH = 100
CHROME_LINES = 5  # header, rule, rule, footer, message
PAIR_HELP = "1/2 choose · t tie · s skip · u undo · q quit · ↑↓ PgUp/PgDn scroll"
RANK_HELP = "order best first (3 1 2 4, 1=2 tie) + Enter · t all tie · s skip · u undo · q quit · ↑↓ scroll"


# ------------------------------------------------------------------------------------ rank orders
def parse_rank_order(text: str, k: int) -> list[list[int]]:
    """Groups of 0-based shown positions, best first, from what the person typed.

    ``"3 1 2 4"`` -> ``[[2], [0], [1], [3]]``; ``"3124"`` (K <= 9) the same; ``"3 1=2 4"`` ->
    ``[[2], [0, 1], [3]]`` (1 and 2 tie). Raises ValueError with a message for the person.
    """
    tokens = text.replace(",", " ").split()
    if len(tokens) == 1 and "=" not in tokens[0] and len(tokens[0]) == k and k <= 9 and tokens[0].isdigit():
        tokens = list(tokens[0])
    groups: list[list[int]] = []
    for token in tokens:
        group = []
        for part in token.split("="):
            if not part.isdigit() or not 1 <= int(part) <= k:
                raise ValueError(f"{part or '='!r} is not an answer number (1..{k})")
            group.append(int(part) - 1)
        groups.append(group)
    flat = [p for g in groups for p in g]
    if sorted(flat) != list(range(k)):
        missing = sorted(set(range(k)) - set(flat))
        repeated = sorted({p for p in flat if flat.count(p) > 1})
        why = "; ".join(
            s
            for s in (
                f"missing {' '.join(str(p + 1) for p in missing)}" if missing else "",
                f"repeated {' '.join(str(p + 1) for p in repeated)}" if repeated else "",
            )
            if s
        )
        raise ValueError(f"type each of 1..{k} once, best first ({why})")
    return groups


def ranks_from_groups(groups: list[list[int]], k: int) -> list[int]:
    """Rank of each shown position (0 = best; tied positions share a rank)."""
    ranks = [0] * k
    for rank, group in enumerate(groups):
        for position in group:
            ranks[position] = rank
    return ranks


# --------------------------------------------------------------------------------- state machine
class LabelSession:
    """The labelling logic, without a terminal: ``press(key)`` changes the state and writes to the store."""

    def __init__(
        self,
        items: list[Item],
        store: LabelStore,
        annotator: str,
        mode: str = "pair",
        seed: int = 0,
        revisit_skipped: bool = False,
    ):
        self.items, self.store, self.annotator, self.mode, self.seed = items, store, annotator, mode, seed
        self.by_id = {item.item_id: item for item in items}
        done = store.state.done_items(annotator, include_skips=not revisit_skipped)
        self.queue: list[Item] = [item for item in items if item.item_id not in done]
        self.total = len(items)
        self.saved = 0  # judgements written in this session (minus undone ones)
        self.message = ""
        self.buffer = ""  # rank mode: what has been typed so far
        self.scroll = 0
        self.page = 10  # lines per page; the view sets it
        self.finished = False

    # ----------------------------------------------------------------- state
    @property
    def current(self) -> Item | None:
        return self.queue[0] if self.queue else None

    @property
    def done(self) -> int:
        return self.total - len(self.queue)

    def shown(self, item: Item | None = None) -> tuple[int, ...]:
        """Indexes into ``item.answers`` in the order shown (2 in pair mode, all in rank mode)."""
        item = item or self.current
        assert item is not None
        return shown_order(item, self.seed, 2 if self.mode == "pair" else None)

    # ------------------------------------------------------------------ keys
    def press(self, key: str) -> None:
        if key in QUIT_KEYS:
            self.finished = True
            return
        if key in SCROLL_KEYS or key in PAGE_KEYS:
            step = SCROLL_KEYS.get(key, 0) or PAGE_KEYS[key] * max(1, self.page - 1)
            self.scroll = max(0, self.scroll + step)
            return
        if key == "u":
            self._undo()
            return
        item = self.current
        if item is None:
            self.message = "every item is labelled: u undoes the last judgement, q quits"
            return
        if key == "s":
            self._write("skip", item, shown_order=list(self.shown(item)))
            self._next("skipped")
        elif key == "t":
            self._tie(item)
        elif self.mode == "pair":
            if key in ("1", "2"):
                self._choose(item, int(key) - 1)
            else:
                self.message = f"keys: {PAIR_HELP}"
        else:
            self._rank_key(item, key)

    def _rank_key(self, item: Item, key: str) -> None:
        if key in RANK_INPUT:
            self.buffer += key
            self.message = ""
        elif key == "backspace":
            self.buffer = self.buffer[:-1]
        elif key == "esc":
            self.buffer = ""
        elif key == "enter":
            k = len(self.shown(item))
            try:
                groups = parse_rank_order(self.buffer, k)
            except ValueError as e:
                self.message = str(e)
                return
            if len(groups) == 1:
                self._tie(item)
                return
            order = self.shown(item)
            self._write(
                "label",
                item,
                prompt=conv_json(item.prompt),
                responses=[conv_json(item.answers[i]) for i in order],
                ranks=ranks_from_groups(groups, k),
                shown_order=list(order),
                order=" ".join("=".join(str(p + 1) for p in g) for g in groups),
                tie=False,
            )
            self._next("saved")
        else:
            self.message = f"keys: {RANK_HELP}"

    # ----------------------------------------------------------------- actions
    def _choose(self, item: Item, position: int) -> None:
        order = self.shown(item)
        self._write(
            "label",
            item,
            prompt=conv_json(item.prompt),
            chosen=conv_json(item.answers[order[position]]),
            rejected=conv_json(item.answers[order[1 - position]]),
            shown_order=list(order),
            choice=position + 1,
            tie=False,
        )
        self._next(f"saved: {position + 1} is better")

    def _tie(self, item: Item) -> None:
        order = self.shown(item)
        self._write(
            "tie",
            item,
            tied=tied_answers(item, order),
            shown_order=list(order),
            choice=None,
            tie=True,
        )
        self._next("saved: tie")

    def _write(self, event: str, item: Item, **fields: Any) -> None:
        self.store.append(event, item.item_id, self.annotator, **fields)
        if event != "skip":
            self.saved += 1

    def _next(self, message: str) -> None:
        self.queue.pop(0)
        self.buffer, self.scroll, self.message = "", 0, message

    def _undo(self) -> None:
        target = self.store.state.last_judgement(self.annotator, self.by_id)
        if target is None:
            self.message = "nothing to undo"
            return
        self.store.undo_last(self.annotator, self.by_id)
        item = self.by_id[str(target["item_id"])]
        if item in self.queue:
            self.queue.remove(item)
        self.queue.insert(0, item)
        if target["event"] != "skip":
            self.saved -= 1
        self.buffer, self.scroll = "", 0
        self.message = f"undone: the {target['event']} of this item; judge it again"


# ------------------------------------------------------------------------------------------- view
Segment = tuple[str, str]  # (text, style)
Line = list[Segment]


@dataclass
class View:
    lines: list[Line] = field(default_factory=list)
    too_small: bool = False


def clean_text(text: str) -> str:
    """Text safe to print: tabs expanded, control characters (escape sequences from a model) made visible."""
    text = text.replace("\r\n", "\n").expandtabs(4)
    return "".join(
        ch if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf") else "\ufffd" for ch in text
    )


def wrap(text: str, width: int) -> list[str]:
    """Wrap every paragraph to ``width`` columns, keeping blank lines."""
    width = max(1, width)
    out: list[str] = []
    for line in clean_text(text).split("\n"):
        out.extend(
            textwrap.wrap(
                line,
                width,
                replace_whitespace=False,
                drop_whitespace=True,
                break_long_words=True,
                break_on_hyphens=False,
            )
            or [""]
        )
    return out


def conversation_lines(conv: Conversation, width: int, show_roles: bool) -> list[str]:
    lines: list[str] = []
    for i, m in enumerate(conv):
        if i:
            lines.append("")
        if show_roles:
            lines.extend(wrap(f"{m.role}: {m.content}", width))
        else:
            lines.extend(wrap(m.content, width))
    return lines


def _pad(text: str, width: int) -> str:
    return text[:width].ljust(width)


def _header(session: LabelSession, width: int) -> Line:
    left = f" alignkit label · {session.mode} · {session.annotator}"
    right = f"done {session.done}/{session.total} · remaining {len(session.queue)} "
    gap = max(1, width - len(left) - len(right))
    return [(left, "bold"), (" " * gap, ""), (right, "bold green")]


def _body(session: LabelSession, width: int) -> list[Line]:
    item = session.current
    if item is None:
        return [
            [(f" All {session.total} items are labelled ({session.saved} in this session).", "bold green")],
            [("", "")],
            [(" u undoes the last judgement, q quits. Your labels are saved.", "")],
        ]
    inner = width - 2
    body: list[Line] = [[(" Prompt", "bold")]]
    show_roles = len(item.prompt) > 1 or item.prompt[0].role != "user"
    body += [[(" " + s, "")] for s in conversation_lines(item.prompt, inner, show_roles)]
    body.append([("─" * width, "dim")])
    order = session.shown(item)
    answers = [item.answers[i] for i in order]
    if session.mode == "pair" and width >= SIDE_BY_SIDE_MIN_WIDTH:
        col = (width - 3) // 2
        left = conversation_lines(answers[0], col - 1, len(answers[0]) > 1)
        right = conversation_lines(answers[1], col - 1, len(answers[1]) > 1)
        body.append([(_pad(" [1]", col), "bold cyan"), (" │ ", "dim"), ("[2]", "bold cyan")])
        for a, b in zip_longest(left, right, fillvalue=""):
            body.append([(_pad(" " + a, col), ""), (" │ ", "dim"), (b, "")])
    else:
        for position, answer in enumerate(answers, 1):
            if position > 1:
                body.append([("", "")])
            body.append([(f" [{position}]", "bold cyan")])
            body += [[(" " + s, "")] for s in conversation_lines(answer, inner, len(answer) > 1)]
    return body


def build_view(session: LabelSession, width: int, height: int) -> View:
    """The whole screen for a terminal of ``width`` x ``height`` cells (clamps ``session.scroll``)."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        text = (
            f"terminal too small: {width}x{height}, alignkit label needs at least {MIN_WIDTH}x{MIN_HEIGHT}. "
            "Enlarge the window (q quits)."
        )
        return View([[(s, "bold yellow")] for s in wrap(text, max(10, width - 1))][: max(1, height)], True)
    body = _body(session, width)
    body_height = height - CHROME_LINES
    session.page = body_height
    session.scroll = min(session.scroll, max(0, len(body) - body_height))
    visible = body[session.scroll : session.scroll + body_height]
    visible += [[("", "")]] * (body_height - len(visible))
    help_text = PAIR_HELP if session.mode == "pair" else RANK_HELP
    position = ""
    if len(body) > body_height:
        position = (
            f"lines {session.scroll + 1}-{min(session.scroll + body_height, len(body))} of {len(body)} "
        )
    room = max(0, width - len(position) - 2)  # one space before the help, one after it
    footer: Line = [(" " + help_text[:room].ljust(room) + " ", "dim"), (position, "dim")]
    if session.mode == "rank" and session.current is not None:
        last: Line = [
            (" order> ", "bold"),
            (session.buffer + "_", "bold"),
            ("  " + session.message, "yellow"),
        ]
    else:
        last = [(" " + session.message, "yellow")]
    rule: Line = [("─" * width, "dim")]
    return View([_header(session, width), rule, *visible, rule, footer, last])


# --------------------------------------------------------------------------------------- terminal
_ESCAPES = {"[A": "up", "[B": "down", "OA": "up", "OB": "down", "[5~": "pgup", "[6~": "pgdn"}


class KeyReader:
    """Single keys from a terminal in cbreak mode; the terminal is restored on exit, error or signal."""

    def __init__(self, fd: int):
        self.fd = fd
        self._saved: Any = None
        self._handlers: dict[int, Any] = {}

    def __enter__(self) -> KeyReader:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._handlers[sig] = signal.signal(sig, _exit_on_signal)
        # Ctrl-C quits even when SIGINT came in ignored: a job started with `&` by a non-interactive shell
        # inherits SIG_IGN, and Python then never raises KeyboardInterrupt.
        self._handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
        tty.setcbreak(self.fd)  # no echo, no line buffering; Ctrl-C still interrupts
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)

    def _ready(self, timeout: float | None) -> bool:
        return bool(select.select([self.fd], [], [], timeout)[0])

    def read(self, timeout: float | None = None) -> str | None:
        """The next key ("1", "enter", "up", ...), or None when ``timeout`` seconds pass without one."""
        if not self._ready(timeout):
            return None
        byte = os.read(self.fd, 1)
        if not byte:
            return "eof"
        if byte == b"\x1b":
            seq = b""
            while len(seq) < 8 and self._ready(0.03):
                seq += os.read(self.fd, 1)
                if len(seq) >= 2 and (seq[-1:].isalpha() or seq.endswith(b"~")):  # "[A", "OA", "[5~"
                    break
            return _ESCAPES.get(seq.decode("ascii", "replace"), "esc" if not seq else "unknown")
        if byte in (b"\r", b"\n"):
            return "enter"
        if byte in (b"\x7f", b"\x08"):
            return "backspace"
        if byte[0] >= 0x80:  # the rest of a UTF-8 character
            need = 1 if byte[0] < 0xE0 else 2 if byte[0] < 0xF0 else 3
            byte += os.read(self.fd, need)
        return byte.decode("utf-8", "replace")


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------------------ driver
def run_label(cfg: LabelConfig) -> dict[str, Any]:
    """Label ``cfg.data`` into ``cfg.output`` interactively; returns a summary."""
    require_paths(cfg.data, cfg.output, " (or --stats LABELS.jsonl)")
    assert cfg.data and cfg.output
    candidates = load_candidates(cfg.data, cfg.skip_invalid)
    for note in candidates.notes:
        console.warn(note)
    annotator = (cfg.annotator or default_annotator()).strip()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(
            "alignkit label is interactive: run it in a terminal (stdin and stdout must be a "
            "terminal); for labels from a model use alignkit judge"
        )
    with LabelStore.open(cfg.output, candidates.dataset, cfg.mode, cfg.append) as store:
        session = LabelSession(candidates.items, store, annotator, cfg.mode, cfg.seed, cfg.revisit_skipped)
        if session.current is None:
            console.info(
                f"all {session.total} items of {cfg.data} are labelled by {annotator} in {cfg.output}; "
                "nothing to do"
            )
        else:
            _loop(session)
        summary = {
            "output": str(cfg.output),
            "annotator": annotator,
            "mode": cfg.mode,
            "saved_this_session": session.saved,
            "done": session.done,
            "total": session.total,
            "remaining": len(session.queue),
        }
    console.info(
        f"{session.saved} judgements saved this session to {cfg.output}; {session.done}/{session.total} "
        f"items done" + ("; run the same command to continue" if session.queue else "")
    )
    return summary


def _loop(session: LabelSession) -> None:
    with KeyReader(sys.stdin.fileno()) as keys, console.label_screen() as screen:
        try:
            _draw_and_read(session, keys, screen)
        except KeyboardInterrupt:  # Ctrl-C quits like q: every confirmed judgement is already on disk
            session.finished = True


def _draw_and_read(session: LabelSession, keys: KeyReader, screen: Any) -> None:
    while not session.finished:
        size = screen.size()
        view = build_view(session, *size)
        screen.draw(view.lines)
        key = None
        while key is None:
            key = keys.read(timeout=0.25)
            if key is None and screen.size() != size:
                break  # resized: draw again
        if key is None or (view.too_small and key not in QUIT_KEYS):
            continue
        session.press(key)
