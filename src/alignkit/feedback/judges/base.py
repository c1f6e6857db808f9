"""What every judge shares: its input, its verdict on one order, and how two orders combine into one outcome.

A judge (`local.LocalJudge`, `http.HttpJudge`, `simulated.SimulatedJudge`) takes `JudgeInput`s (a prompt and
two answers in the order shown) and returns one `Verdict` each; `combine` turns the verdicts on (x, y) and,
with ``--swap``, on (y, x) into a `PairOutcome`: a label, a tie or a skip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from alignkit.data.records import Conversation


class JudgeEndpointError(Exception):
    """The HTTP judge kept failing after every retry (exit status 1; judgements so far are kept)."""


@dataclass(frozen=True)
class JudgeInput:
    prompt: str  # the request, as text
    answer_a: str  # shown first
    answer_b: str  # shown second


@dataclass
class Verdict:
    """One judgement of one order."""

    winner: int | None  # 0: the answer shown first is better, 1: the second; None: no decision
    first: float | None = None  # P(first is better), normalised over the two answer names
    logps: list[float] | None = None  # log-probability of each answer name as the next token [first, second]
    mass: float | None = None  # probability on the two names together (low: the judge ignores the format)
    reply: str | None = None  # HTTP: the text the endpoint returned
    problem: str | None = None  # why there is no decision (unparsed reply)
    truncated: bool = False  # the judge prompt was cut to fit


class Judge(Protocol):
    name: str

    def judge(self, inputs: list[JudgeInput]) -> list[Verdict]: ...


def verdict_from_logps(lp_first: float, lp_second: float, **extra: Any) -> Verdict:
    """Decide from the two names' log-probabilities; exactly equal gives no winner (a tie)."""
    diff = lp_first - lp_second
    first = 1.0 / (1.0 + math.exp(-diff)) if diff > -700 else 0.0  # sigmoid of the log-odds
    winner = None if diff == 0 else (0 if diff > 0 else 1)
    return Verdict(winner, first, [lp_first, lp_second], math.exp(lp_first) + math.exp(lp_second), **extra)


# ------------------------------------------------------------------------------------ swap logic
@dataclass
class PairOutcome:
    event: str  # "label", "tie" or "skip"
    winner: int | None  # label: 0 = the answer shown first (in the first order) is better, 1 = the second
    p_first: float | None  # P(first-shown answer is better); with swap, the mean over both orders
    consistent: bool | None  # swap only: did both orders pick the same answer?
    reason: str | None = None  # skip: inconsistent, unparsed


def combine(ab: Verdict, ba: Verdict | None, on_disagree: str = "tie") -> PairOutcome:
    """One outcome from a verdict on (x, y) and, with swap, one on (y, x)."""
    if ba is None:
        if ab.winner is None:
            return PairOutcome(
                "skip" if ab.problem else "tie", None, ab.first, None, ab.problem and "unparsed"
            )
        return PairOutcome("label", ab.winner, ab.first, None)
    p = None
    if ab.first is not None and ba.first is not None:
        p = (ab.first + (1.0 - ba.first)) / 2  # x first in ab, second in ba
    if ab.problem or ba.problem:
        return PairOutcome("skip", None, p, None, "unparsed")
    x_wins_ab = None if ab.winner is None else ab.winner == 0
    x_wins_ba = None if ba.winner is None else ba.winner == 1
    if x_wins_ab is None and x_wins_ba is None:
        return PairOutcome("tie", None, p, True)
    if x_wins_ab == x_wins_ba:
        return PairOutcome("label", 0 if x_wins_ab else 1, p, True)
    if on_disagree == "drop":
        return PairOutcome("skip", None, p, False, "inconsistent")
    return PairOutcome("tie", None, p, False)


# ------------------------------------------------------------------------------------------ texts
def conversation_text(conv: Conversation, default_role: str) -> str:
    """A conversation as plain text: the content alone for one message of the usual role, else role-labelled."""
    if len(conv) == 1 and conv[0].role == default_role:
        return conv[0].content
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in conv)
