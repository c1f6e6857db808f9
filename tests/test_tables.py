"""Console tables (issue 24): readable at 80 columns and in a pipe, never a word split across lines."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from alignkit import console
from alignkit.reports.demo import show_table

VERDICTS = ["the baseline", "beats base", "no clear difference", "worse than base"]


def _method(name: str, verdict: str, kind: str = "sampled", win: float | None = 0.55) -> dict:
    return dict(
        method=name,
        win_rate=win,
        win_rate_stderr=0.05,
        gold=-1.234,
        proxy=2.345,
        kl=1.2,
        kl_kind=kind,
        mean_length=123.4,
        verdict=verdict,
    )


RESULT = {
    "methods": [
        _method("base", VERDICTS[0], win=None),
        _method("best-of-16", VERDICTS[1], kind="bound"),
        _method("dpo", VERDICTS[2]),
        _method("ppo", VERDICTS[3]),
    ],
    "reward_model": {"eval_accuracy": 0.61, "eval_pairs": 41},
    "gold": "simulated annotator",
    "proxy": "reward model",
}


@pytest.fixture
def screen(monkeypatch):
    """A console writing to a string buffer (not a terminal, like a pipe) of a given width."""

    def make(width: int) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(
            console, "_err", Console(file=buffer, width=width, highlight=False, soft_wrap=True)
        )
        monkeypatch.setattr(console, "_quiet", False)
        return buffer

    return make


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s│┃]+", text))


@pytest.mark.parametrize("width", [80, 50])
def test_demo_table_never_splits_a_word(screen, width):
    """Guards issue 24: the demo table printed "differen / ce" when piped. At 80 columns it fits, wrapping
    verdicts at spaces only; narrower than its narrowest layout (50), a pipe gets it whole, not squeezed."""
    buffer = screen(width)
    show_table(RESULT)
    out = buffer.getvalue()
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    tokens = _tokens(out)
    for verdict in VERDICTS:
        assert all(word in tokens for word in verdict.split()), (verdict, out)
    for cell in ("best-of-16", "0.55 ± 0.05", "≤ 1.20", "-1.234", "123.4"):
        assert any(cell in line for line in table), (cell, out)  # short cells stay on one line
    assert "differen" not in tokens and "ce" not in tokens
    widths = {len(line) for line in table}
    assert len(widths) == 1  # one rectangle
    if width == 80:
        assert widths.pop() <= 80
    else:
        assert widths.pop() > width  # printed whole


def test_key_values_keep_a_long_value_whole_in_a_pipe(screen):
    """Guards issue 24: a path longer than the console is printed whole on one line, not folded."""
    buffer = screen(80)
    path = "/runs/" + "a-very-long-directory-name/" * 4 + "samples.jsonl"
    console.key_values("alignkit sample", [("mode", "sample"), ("output", path), ("tokens/s", 1234.6)])
    out = buffer.getvalue()
    assert any(path in line for line in out.splitlines()), out
    assert "1235" in out


def test_a_long_text_column_wraps_at_spaces_within_80_columns(screen):
    """Guards issue 24: long cells wrap at spaces inside 80 columns; no word is cut."""
    buffer = screen(80)
    answer = "The quick brown fox jumps over the lazy dog and keeps running through the meadow " * 3
    console.table("sample answers", ["prompt", "policy", "reference"], [["say hi", answer, answer.upper()]])
    out = buffer.getvalue()
    assert max(len(line) for line in out.splitlines()) <= 80
    tokens = _tokens(out)
    assert {"meadow", "MEADOW", "running", "RUNNING", "through"} <= tokens
    assert all(
        t
        in set(answer.split())
        | set(answer.upper().split())
        | {"say", "hi", "sample", "answers", "prompt", "policy", "reference"}
        for t in tokens
        if t.isalpha()
    )
