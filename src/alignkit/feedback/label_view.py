"""What `alignkit label` shows: the whole screen as lines of (text, style) segments, for any terminal size.

The answers get their lines first, so that a person never judges answers that are not on screen (issue
24: after a resize, a long prompt pushed the answers below the bottom edge and only ``[1] │ [2]`` was
left). `allot` shares the body of the screen in this order:

1. one line for each answer (its first line) and one for the prompt; when even that does not fit, the
   view is *too small*: one "enlarge the terminal" line, and the UI ignores every key but quit;
2. each answer up to `ANSWER_MIN_LINES` lines (all of it when shorter);
3. a blank line between stacked answers;
4. what is left, one line at a time in turn, to every part (prompt, answers) that still has more.

Each part is a window of its own: its title (``Prompt``, ``[1]``, ...) stays in place and says which of
its lines are shown (``lines 3-8 of 40``) when it does not fit; ↑↓ PgUp/PgDn move every cut window
together (each stops at its own end), so the prompt scrolls while both answers stay on screen. Nothing
is kept between frames but ``session.scroll``: every frame is laid out anew for the current size.
"""

from __future__ import annotations

import textwrap
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from alignkit.data.records import Conversation

MIN_WIDTH = 40
SIDE_BY_SIDE_MIN_WIDTH = 100
CHROME_LINES = 5  # header, rule, rule, footer, message
ANSWER_MIN_LINES = 4  # lines each answer gets before the prompt gets more than its first line
PAIR_HELP = "1/2 choose · t tie · s skip · u undo · q quit · ↑↓ PgUp/PgDn scroll"
RANK_HELP = "order best first (3 1 2 4, 1=2 tie) + Enter · t all tie · s skip · u undo · q quit · ↑↓ scroll"

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


# ------------------------------------------------------------------------------------------ layout
def allot(
    answer_needs: list[int], prompt_need: int, room: int, gaps: int = 0
) -> tuple[list[int], int, bool] | None:
    """Window heights (answers, prompt) and whether the ``gaps`` blank lines fit, in ``room`` lines.

    The order is the module docstring's; None when not every answer and the prompt get one line.
    """
    answers = [min(need, 1) for need in answer_needs]
    prompt = min(prompt_need, 1)
    left = room - sum(answers) - prompt
    if left < 0:
        return None
    grew = True
    while left > 0 and grew:  # 2. answers up to ANSWER_MIN_LINES each, in turn
        grew = False
        for i, need in enumerate(answer_needs):
            if left > 0 and answers[i] < min(need, ANSWER_MIN_LINES):
                answers[i] += 1
                left -= 1
                grew = True
    use_gaps = gaps > 0 and left >= gaps
    left -= gaps if use_gaps else 0
    grew = True
    while left > 0 and grew:  # 4. the rest in turn to every part that has more
        grew = False
        if prompt < prompt_need:
            prompt += 1
            left -= 1
            grew = True
        for i, need in enumerate(answer_needs):
            if left > 0 and answers[i] < need:
                answers[i] += 1
                left -= 1
                grew = True
    return answers, prompt, use_gaps


@dataclass
class _Window:
    """``height`` lines of ``lines``, from ``scroll`` (each window stops at its own end)."""

    lines: list[str]
    height: int

    def offset(self, scroll: int) -> int:
        return min(scroll, max(0, len(self.lines) - self.height))

    def shown(self, scroll: int) -> list[str]:
        start = self.offset(scroll)
        part = self.lines[start : start + self.height]
        return part + [""] * (self.height - len(part))

    def where(self, scroll: int) -> str:
        """``lines 3-8 of 40`` when cut, else nothing."""
        if len(self.lines) <= self.height:
            return ""
        start = self.offset(scroll)
        return f"lines {start + 1}-{start + self.height} of {len(self.lines)}"


def _title(name: str, window: _Window, scroll: int, width: int) -> Line:
    where = window.where(scroll)
    gap = max(1, width - len(name) - len(where) - 1)
    return [(name, "bold cyan" if name.startswith(" [") else "bold"), (" " * gap, ""), (where, "dim")]


def _item_body(session: Any, width: int, room: int) -> list[Line] | None:
    """The prompt and the shown answers in ``room`` lines (None: they do not fit)."""
    item = session.current
    show_roles = len(item.prompt) > 1 or item.prompt[0].role != "user"
    prompt = [" " + s for s in conversation_lines(item.prompt, width - 2, show_roles)]
    answers = [item.answers[i] for i in session.shown(item)]
    side = session.mode == "pair" and width >= SIDE_BY_SIDE_MIN_WIDTH
    col = (width - 3) // 2
    if side:
        columns = [
            [" " + s for s in conversation_lines(answers[0], col - 1, len(answers[0]) > 1)],
            conversation_lines(answers[1], width - col - 4, len(answers[1]) > 1),
        ]
        needs, titles, gaps = [max(len(c) for c in columns)], 1, 0
    else:
        columns = [[" " + s for s in conversation_lines(a, width - 2, len(a) > 1)] for a in answers]
        needs, titles, gaps = [len(c) for c in columns], len(columns), len(columns) - 1
    heights = allot(needs, len(prompt), room - 2 - titles, gaps)  # 2: the prompt's title and the rule
    if heights is None:
        return None
    answer_heights, prompt_height, use_gaps = heights
    windows = [_Window(prompt, prompt_height)]
    windows += [_Window(c, answer_heights[0 if side else i]) for i, c in enumerate(columns)]
    cut = [w.height for w in windows if len(w.lines) > w.height]
    session.page = min(cut) if cut else room
    session.scroll = min(session.scroll, max(0, *(len(w.lines) - w.height for w in windows)))
    s = session.scroll
    body: list[Line] = [_title(" Prompt", windows[0], s, width)]
    body += [[(text, "")] for text in windows[0].shown(s)]
    body.append([("─" * width, "dim")])
    if side:
        left, right = windows[1], windows[2]
        body.append(
            [
                (_pad(f" [1]  {left.where(s)}", col), "bold cyan"),
                (" │ ", "dim"),
                (f"[2]  {right.where(s)}", "bold cyan"),
            ]
        )
        for a, b in zip(left.shown(s), right.shown(s), strict=True):
            body.append([(_pad(a, col), ""), (" │ ", "dim"), (b, "")])
        return body
    for position, window in enumerate(windows[1:], 1):
        if position > 1 and use_gaps:
            body.append([("", "")])
        body.append(_title(f" [{position}]", window, s, width))
        body += [[(text, "")] for text in window.shown(s)]
    return body


# ------------------------------------------------------------------------------------------- view
def _header(session: Any, width: int) -> Line:
    left = f" alignkit label · {session.mode} · {session.annotator}"
    right = f"done {session.done}/{session.total} · remaining {len(session.queue)} "
    left = left[: max(0, width - len(right) - 1)]  # narrow: the count stays, the title is cut
    gap = max(1, width - len(left) - len(right))
    return [(left, "bold"), (" " * gap, ""), (right, "bold green")]


def _too_small(width: int, height: int) -> View:
    text = f" enlarge the terminal: {width}x{height} is too small to show the answers (q quits)"
    return View([[(text[: max(1, width)], "bold yellow")]], True)


def build_view(session: Any, width: int, height: int) -> View:
    """The whole screen for a terminal of ``width`` x ``height`` cells (clamps ``session.scroll``).

    ``session`` is a `alignkit.feedback.label.LabelSession`. A view that is not ``too_small`` shows the
    first line of every shown answer.
    """
    room = height - CHROME_LINES
    if width < MIN_WIDTH or room < 1:
        return _too_small(width, height)
    if session.current is None:
        session.scroll = 0
        body: list[Line] | None = [
            [(f" All {session.total} items are labelled ({session.saved} in this session).", "bold green")],
            [("", "")],
            [(" u undoes the last judgement, q quits. Your labels are saved.", "")],
        ][:room]
    else:
        body = _item_body(session, width, room)
    if body is None:
        return _too_small(width, height)
    body += [[("", "")]] * (room - len(body))
    help_text = PAIR_HELP if session.mode == "pair" else RANK_HELP
    footer: Line = [(" " + help_text[: width - 2].ljust(width - 2) + " ", "dim")]
    if session.mode == "rank" and session.current is not None:
        last: Line = [
            (" order> ", "bold"),
            (session.buffer + "_", "bold"),
            ("  " + session.message, "yellow"),
        ]
    else:
        last = [(" " + session.message, "yellow")]
    rule: Line = [("─" * width, "dim")]
    return View([_header(session, width), rule, *body, rule, footer, last])
