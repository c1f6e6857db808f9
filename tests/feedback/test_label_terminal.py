"""The label UI's terminal side without a child process: `KeyReader` on a pseudo-terminal, and the draw/key loop.

Issue 24: the Ctrl-C race (a key select() saw, flushed away by Ctrl-C before read(2); KeyboardInterrupt
raised at an arbitrary point) and judgements accepted for answers that were not on screen.
"""

from __future__ import annotations

import os
import signal
import sys
import termios
import threading

import pytest

from alignkit.feedback import label as label_module
from alignkit.feedback.items import load_candidates
from alignkit.feedback.label import KeyReader, LabelSession, _draw_and_read
from alignkit.feedback.store import LabelStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_a_key_flushed_between_select_and_read_does_not_block(pty_pair, monkeypatch):
    """The hang: select() says a key is waiting, Ctrl-C flushes it, then read(2) waited for the next key.

    The flush is forced right after select() reports the byte; ``read`` must come back (no key) instead of
    blocking. A reader that blocks is released by a later byte, and the test fails.
    """
    master, slave = pty_pair
    real_select = label_module.select.select

    def select_then_flush(r, w, x, timeout=None):
        ready = real_select(r, w, x, timeout)
        if slave in ready[0]:
            termios.tcflush(slave, termios.TCIFLUSH)  # what the line discipline does on Ctrl-C
            monkeypatch.setattr(label_module.select, "select", real_select)  # once
        return ready

    with KeyReader(slave) as keys:
        os.write(master, b"j")
        monkeypatch.setattr(label_module.select, "select", select_then_flush)
        got: list = []
        reader = threading.Thread(target=lambda: got.append(keys.read(timeout=2)), daemon=True)
        reader.start()
        reader.join(10)
        blocked = reader.is_alive()
        if blocked:
            os.write(master, b"x")  # release the stuck read(2)
            reader.join(10)
        assert not blocked, "read() blocked on a key that was flushed away"
        assert got == [None]
        os.write(master, b"k")
        assert keys.read(timeout=5) == "k"  # later keys still come through


def test_sigint_while_entered_is_the_interrupt_key_not_an_exception(pty_pair):
    """Ctrl-C (SIGINT) while the reader is entered becomes the key "interrupt", at once, even when the
    signal came before read() was called, and never raises KeyboardInterrupt in the middle of the loop.
    """
    _, slave = pty_pair
    before = signal.getsignal(signal.SIGINT)
    try:
        with KeyReader(slave) as keys:
            os.kill(os.getpid(), signal.SIGINT)  # delivered before read(): nothing is in select() yet
            assert keys.read(timeout=5) == "interrupt"
            assert keys.read(timeout=0) == "interrupt"  # it stays: the loop quits
    except KeyboardInterrupt:
        pytest.fail("SIGINT raised KeyboardInterrupt inside the reader")
    assert signal.getsignal(signal.SIGINT) is before  # restored on exit
    assert signal.set_wakeup_fd(-1) == -1  # the wake-up pipe is gone again


def test_sigwinch_is_read_as_a_resize(pty_pair):
    """A resize and back between two polls of the size still redraws: SIGWINCH is the key "resize"."""
    _, slave = pty_pair
    with KeyReader(slave) as keys:
        os.kill(os.getpid(), signal.SIGWINCH)
        assert keys.read(timeout=5) == "resize"
        assert keys.read(timeout=0) is None  # once per signal


def test_the_terminal_modes_come_back(pty_pair):
    _, slave = pty_pair
    saved = termios.tcgetattr(slave)
    with KeyReader(slave):
        mode = termios.tcgetattr(slave)
        assert not mode[3] & termios.ICANON and mode[6][termios.VMIN] == 0
    assert termios.tcgetattr(slave) == saved


# ------------------------------------------------------------------------------------------ the loop
class FakeScreen:
    """A terminal whose size changes when the script says so; remembers what was drawn."""

    def __init__(self, size):
        self.current = size
        self.frames: list[tuple[tuple[int, int], str]] = []

    def size(self):
        return self.current

    def draw(self, lines, size=None):
        if size is not None and size != self.current:
            return False
        self.frames.append((self.current, "\n".join("".join(t for t, _ in line) for line in lines)))
        return True


class FakeKeys:
    """Keys from a script; a tuple ``(width, height)`` resizes the screen (between draw and key).

    ``"|"`` marks where the keys typed after a redraw begin: `drop_typed_ahead` drops those before it.
    """

    def __init__(self, screen, script):
        self.screen, self.script = screen, list(script)

    def read(self, timeout=None):
        while self.script:
            step = self.script.pop(0)
            if isinstance(step, tuple):
                self.screen.current = step
                continue
            if step != "|":
                return step
        return "q"

    def drop_typed_ahead(self):
        if "|" not in self.script:
            return False
        cut = self.script.index("|")
        del self.script[: cut + 1]
        return cut > 0


def _session(candidates, out):
    cands = load_candidates(candidates)
    store = LabelStore.open(out, cands.dataset, "pair")
    return LabelSession(cands.items, store, "ana"), store


def test_a_choice_on_a_too_small_screen_records_nothing(candidates, tmp_path):
    """Too small for any answer line: one "enlarge the terminal" line, and 1/2/t are ignored."""
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    screen = FakeScreen((30, 8))
    _draw_and_read(s, FakeKeys(screen, ["1", "2", "t", "q"]), screen)
    store.close()
    assert s.saved == 0 and s.done == 0
    assert all("enlarge the terminal" in text for _, text in screen.frames)


def test_a_choice_made_across_a_resize_is_not_taken(candidates, tmp_path):
    """Resized between the frame and the key: the person saw a stale frame, so the key is not a judgement.

    The screen is laid out again for the new size; the same key pressed on that frame counts.
    """
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    screen = FakeScreen((120, 30))
    _draw_and_read(s, FakeKeys(screen, [(70, 24), "1", "1", "q"]), screen)
    store.close()
    assert s.saved == 1 and s.done == 1
    sizes = [size for size, _ in screen.frames]
    assert sizes[0] == (120, 30) and sizes[1] == (70, 24)
    assert "the terminal was resized" in screen.frames[1][1]


def test_keys_typed_before_the_redraw_after_a_resize_are_dropped(candidates, tmp_path):
    """After SIGWINCH the screen is drawn again; a choice typed before that (on the stale screen) is dropped
    before the new frame is drawn, and that frame says so (a key typed after it counts: the pty test
    `test_resizes_keep_both_answers_on_screen` presses q right after the new frame appears)."""
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    screen = FakeScreen((120, 30))
    _draw_and_read(s, FakeKeys(screen, ["resize", "1", "|", "2", "q"]), screen)
    store.close()
    assert s.saved == 1 and "the terminal was resized" in screen.frames[1][1]
    assert s.store.state.rows[-1][1]["choice"] == 2  # the key pressed on the new frame
