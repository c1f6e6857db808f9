"""Judges as a reward: the round-robin win rate inside each group (`alignkit.rewards.judges`)."""

from __future__ import annotations

import math

import pytest

from alignkit.feedback.judges.base import Verdict
from alignkit.rewards.ensemble import RewardSet
from alignkit.rewards.judges import JudgeScorer, SimulatedScorer, judge_member


class LongerWins:
    """Prefers the longer answer; ties on equal length; 'FIRST' always wins when shown first (a position bias);
    no decision when either answer says 'broken'."""

    def __init__(self):
        self.calls = 0

    def judge(self, inputs):
        out = []
        for x in inputs:
            self.calls += 1
            if "broken" in (x.answer_a + x.answer_b):
                out.append(Verdict(None, problem="unparsed"))
            elif x.answer_a.startswith("FIRST") or x.answer_b.startswith("FIRST"):
                out.append(Verdict(0))
            elif len(x.answer_a) == len(x.answer_b):
                out.append(Verdict(None))
            else:
                out.append(Verdict(0 if len(x.answer_a) > len(x.answer_b) else 1))
        return out


def test_win_rate_inside_each_group_by_hand():
    judge = LongerWins()
    scorer = JudgeScorer(judge, swap=False)
    answers = ["a", "bbb", "cc", "xx", "yy"]
    scores = scorer.score_text(["p"] * 5, answers, groups=[0, 0, 0, 1, 1])
    # group 0: bbb beats both (1.0), cc beats a and loses to bbb (0.5), a loses both (0.0); group 1: a tie
    assert scores.tolist() == pytest.approx([0.0, 1.0, 0.5, 0.5, 0.5])
    assert judge.calls == 3 + 1  # n(n-1)/2 per group


def test_swap_cancels_a_position_bias_and_undecided_pairs_leave():
    scorer = JudgeScorer(LongerWins(), swap=True)
    scores = scorer.score_text(["p"] * 3, ["FIRST", "longer answer", "broken"], groups=[0, 0, 0])
    # FIRST vs longer: each wins when shown first -> 0.5 each; pairs with 'broken' are undecided and leave
    assert scores[0].item() == pytest.approx(0.5) and scores[1].item() == pytest.approx(0.5)
    assert math.isnan(scores[2].item())  # no decided pair: no reward


def test_an_answer_alone_meets_the_reference_or_gets_nothing():
    scorer = JudgeScorer(LongerWins(), swap=False)
    scores = scorer.score_text(["p", "q"], ["long answer", "x"], columns={"reference": ["short", None]})
    assert scores[0].item() == 1.0 and math.isnan(scores[1].item())


def test_in_a_reward_set_the_groups_reach_the_judge():
    rs = RewardSet([judge_member(LongerWins(), "judge", swap=False), judge_member(None, "simulated")])
    combined, per = rs.score(["p"] * 2, ["a", "bbb"], groups=[0, 0])
    assert per["judge"].tolist() == [0.0, 1.0]
    assert isinstance(rs.members[1].scorer, SimulatedScorer)
    assert combined.tolist() == pytest.approx((per["judge"] + per["simulated"]).tolist())
