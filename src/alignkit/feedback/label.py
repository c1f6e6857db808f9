"""`alignkit label`: a terminal UI in which people compare (pair) or order (rank) answers.

Three layers, so that tests can drive the logic without a terminal:

* `LabelSession`: a pure state machine. ``press(key)`` takes one key ("1", "t", "enter", "up", ...),
  appends the judgement to the `LabelStore` (fsync-ed before it returns) and moves on.
* `build_view(session, width, height)` (in `label_view`): what the screen shows, as lines of (text, style)
  segments; side by side on wide terminals, stacked on narrow ones, the answers' lines first (the prompt is
  cut and scrolls), one "enlarge the terminal" line when not every answer fits.
* `run_label`: opens the store, puts the terminal in cbreak mode (`KeyReader`, restored on exit, exception,
  SIGTERM and SIGHUP; Ctrl-C and resizes arrive as the keys "interrupt" and "resize"), and loops
  draw -> key -> press. Drawing is `alignkit.console.label_screen`.

Keys, pair mode: ``1``/``2`` choose, ``t`` tie, ``s`` skip, ``u`` undo the last, ``q`` quit, arrows and
PgUp/PgDn scroll. Rank mode: type the shown numbers best first (``3 1 2 4``, or ``3124``; ``1=2`` ties
two answers) and Enter; ``t``, ``s``, ``u``, ``q`` as in pair mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import sys
import time
from typing import Any

from alignkit import console
from alignkit.errors import UserError
from alignkit.feedback.config import LabelConfig, default_annotator, require_paths
from alignkit.feedback.items import Item, load_candidates, shown_order
from alignkit.feedback.label_view import PAIR_HELP, RANK_HELP, build_view
from alignkit.feedback.store import (
    LabelStore,
    choice_fields,
    rank_fields,
    ranks_from_groups,
    tie_fields,
)

__all__ = ["KeyReader", "LabelSession", "parse_rank_order", "ranks_from_groups", "run_label"]

QUIT_KEYS = ("q", "Q", "\x03", "\x04", "eof", "interrupt")
DECISION_KEYS = ("1", "2", "t", "enter")  # keys that record a judgement of what is on screen
RESIZED = "the terminal was resized: look at the answers again, then press the key again"
SCROLL_KEYS = {"up": -1, "down": 1, "k": -1, "j": 1}
PAGE_KEYS = {"pgup": -1, "pgdn": 1}
RANK_INPUT = set("0123456789 =,")


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
        self._since = time.monotonic()  # when the current item came on screen (for ``seconds``)

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
            self._write("label", item, **rank_fields(item, self.shown(item), groups))
            self._next("saved")
        else:
            self.message = f"keys: {RANK_HELP}"

    # ----------------------------------------------------------------- actions
    def _choose(self, item: Item, position: int) -> None:
        self._write("label", item, **choice_fields(item, self.shown(item), position))
        self._next(f"saved: {position + 1} is better")

    def _tie(self, item: Item) -> None:
        self._write("tie", item, **tie_fields(item, self.shown(item)))
        self._next("saved: tie")

    def _write(self, event: str, item: Item, **fields: Any) -> None:
        seconds = round(time.monotonic() - self._since, 3)
        self.store.append(event, item.item_id, self.annotator, **fields, seconds=seconds, ui="terminal")
        if event != "skip":
            self.saved += 1

    def _next(self, message: str) -> None:
        self.queue.pop(0)
        self.buffer, self.scroll, self.message = "", 0, message
        self._since = time.monotonic()

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
        self.buffer, self.scroll, self._since = "", 0, time.monotonic()
        self.message = f"undone: the {target['event']} of this item; judge it again"


# --------------------------------------------------------------------------------------- terminal
_ESCAPES = {"[A": "up", "[B": "down", "OA": "up", "OB": "down", "[5~": "pgup", "[6~": "pgdn"}


class KeyReader:
    """Single keys from a terminal in cbreak mode; the terminal is restored on exit, error or signal.

    Ctrl-C is read like a key: SIGINT ("interrupt", one of `QUIT_KEYS`) never raises KeyboardInterrupt while
    the reader is entered. Issue 24, the rare Ctrl-C hang, was a race between the signal and the input: the
    old reader asked select() whether a key was waiting and then called a blocking os.read(). Ctrl-C makes
    the kernel send SIGINT *and* flush the terminal's unread input. When that landed between select()
    ("a byte is there") and read(2), the byte was gone, CPython's C-level handler had already taken the
    signal (KeyboardInterrupt is raised only at the next bytecode boundary, and read(2) is one C call), so
    nothing was left to interrupt read(2): the UI sat there until the next key. The asynchronous
    KeyboardInterrupt could also land anywhere else: half-way through a frame, or in `LabelStore.append`
    after the fsync but before the count, so the summary said one judgement less than the file holds.

    Now (1) read(2) never waits (VMIN=0: it returns nothing when the byte select() saw was flushed, and
    ``read`` reports no key); (2) the SIGINT handler does nothing in Python: ``signal.set_wakeup_fd`` makes
    the C-level handler write the signal number to a pipe the moment it arrives, and select() watches that
    pipe with the terminal, so a Ctrl-C wakes the reader at once, wherever the loop was, and the loop
    quits from its one safe point (between keys). It works the same when SIGINT came in ignored (a job
    started with `&` by a non-interactive shell inherits SIG_IGN). SIGWINCH goes the same way and is read
    as "resize", so that a resize and back (120x30 -> 70x24 -> 120x30 between two polls of the size, which
    a terminal may leave cropped) still redraws.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.tty = os.isatty(fd)
        self.interrupted = False
        self._resized = False
        self._saved: Any = None
        self._handlers: dict[int, Any] = {}
        self._wake: tuple[int, int] | None = None  # the pipe the C-level handler writes signal numbers to
        self._old_wakeup = -1

    def __enter__(self) -> KeyReader:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        try:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._handlers[sig] = signal.signal(sig, _exit_on_signal)
            self._wake = os.pipe()
            for end in self._wake:
                os.set_blocking(end, False)
            self._old_wakeup = signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
            for sig in (signal.SIGINT, signal.SIGWINCH):
                self._handlers[sig] = signal.signal(sig, _note_signal)
            tty.setcbreak(self.fd)  # no echo, no line buffering; Ctrl-C still sends SIGINT
            mode = termios.tcgetattr(self.fd)
            mode[6][termios.VMIN], mode[6][termios.VTIME] = 0, 0  # read(2) returns at once (see above)
            termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers.clear()
        if self._wake is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            for end in self._wake:
                os.close(end)
            self._wake = None

    def _ready(self, timeout: float | None) -> bool:
        """A byte (or a signal, when entered) is waiting, within ``timeout`` seconds."""
        fds = [self.fd] if self._wake is None else [self.fd, self._wake[0]]
        return bool(select.select(fds, [], [], timeout)[0])

    def _signals(self) -> None:
        """What the wake-up pipe says: SIGINT sets ``interrupted`` (for good), SIGWINCH a pending resize."""
        if self._wake is not None:
            with contextlib.suppress(BlockingIOError):
                while data := os.read(self._wake[0], 64):
                    self.interrupted = self.interrupted or signal.SIGINT in data
                    self._resized = self._resized or signal.SIGWINCH in data

    def drop_typed_ahead(self) -> bool:
        """Discard the keys not read yet (typed while the screen was stale); whether there were any."""
        import termios

        if not select.select([self.fd], [], [], 0)[0]:
            return False
        with contextlib.suppress(termios.error):
            termios.tcflush(self.fd, termios.TCIFLUSH)
        return True

    def _byte(self) -> bytes | None:
        """One byte; b"" at the end of the input; None when the byte select() saw is gone (flushed)."""
        for _ in range(2):
            try:
                byte = os.read(self.fd, 1)
            except OSError as e:
                if e.errno == errno.EIO:  # the terminal was closed
                    return b""
                raise
            if byte or not self.tty:
                return byte
            if not select.select([self.fd], [], [], 0)[0]:
                return None
        return b""  # a terminal readable twice with nothing in it: hung up

    def read(self, timeout: float | None = None) -> str | None:
        """The next key ("1", "enter", "up", "interrupt", "resize", ...), or None after ``timeout`` seconds."""
        ready = self._ready(timeout)
        self._signals()
        if self.interrupted:
            return "interrupt"
        if self._resized:
            self._resized = False
            return "resize"
        byte = self._byte() if ready else None  # None too when only the wake-up pipe was ready
        if byte is None:
            return None
        if not byte:
            return "eof"
        if byte == b"\x1b":
            seq = b""
            while len(seq) < 8 and self._ready(0.03):
                seq += self._byte() or b""
                if len(seq) >= 2 and (seq[-1:].isalpha() or seq.endswith(b"~")):  # "[A", "OA", "[5~"
                    break
            return _ESCAPES.get(seq.decode("ascii", "replace"), "esc" if not seq else "unknown")
        if byte in (b"\r", b"\n"):
            return "enter"
        if byte in (b"\x7f", b"\x08"):
            return "backspace"
        if byte[0] >= 0x80:  # the rest of a UTF-8 character
            need = 1 if byte[0] < 0xE0 else 2 if byte[0] < 0xF0 else 3
            while need and self._ready(0.03):
                more = self._byte() or b""
                byte, need = byte + more, need - len(more)
        return byte.decode("utf-8", "replace")


def _note_signal(signum: int, frame: Any) -> None:
    """SIGINT or SIGWINCH while the reader is entered: nothing here; the wake-up pipe tells `KeyReader.read`."""


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------------------ driver
def run_label(cfg: LabelConfig) -> dict[str, Any]:
    """Label ``cfg.data`` into ``cfg.output`` interactively; returns a summary."""
    require_paths(cfg.data, cfg.output, " (or --stats LABELS.jsonl)")
    assert cfg.data and cfg.output
    candidates = load_candidates(cfg.data, cfg.skip_invalid, cfg.format)
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
        except KeyboardInterrupt:  # not from Ctrl-C (KeyReader reads it as a key); quit like q all the same
            session.finished = True


def _draw_and_read(session: LabelSession, keys: KeyReader, screen: Any) -> None:
    """Lay out, draw, read a key; a judgement counts only for answers that were on screen at this size.

    After a resize the screen is laid out anew, and keys typed before the new frame was drawn are dropped
    (they were typed looking at a stale, maybe cropped, screen).
    """
    resized = False
    while not session.finished:
        size = screen.size()
        if resized and keys.drop_typed_ahead():  # before drawing: a key typed after the new frame counts
            session.message = RESIZED
        view = build_view(session, *size)
        if not screen.draw(view.lines, size):
            continue  # resized while the view was laid out: lay it out again
        resized, key = False, None
        while key is None:
            key = keys.read(timeout=0.25)
            if key == "resize" or (key is None and screen.size() != size):
                resized, key = True, None
                break  # lay out and draw again
        if key is None or (view.too_small and key not in QUIT_KEYS):
            continue  # too small: no answer is on screen, only quitting works
        if key in DECISION_KEYS and screen.size() != size:
            resized, session.message = True, RESIZED
            continue
        session.press(key)
