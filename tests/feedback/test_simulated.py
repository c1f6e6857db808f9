"""The simulated annotator: each term of its documented rule, checked by hand."""

from __future__ import annotations

import pytest

from alignkit.feedback.judges.base import JudgeInput
from alignkit.feedback.judges.simulated import (
    EMPTY_SCORE,
    SimulatedJudge,
    content_words,
    is_complete,
    length_penalty,
    relevance,
    repetition,
    simulated_score,
)


def test_relevance_counts_the_prompts_content_words():
    assert content_words("What is the capital of France?") == {"capital", "france"}
    assert relevance("What is the capital of France?", "The capital of France is Paris.") == 1.0
    assert relevance("What is the capital of France?", "Paris is lovely.") == 0.0
    assert relevance("What is the capital of France?", "It is a capital city.") == 0.5
    assert relevance("Is it?", "anything") == 1.0  # no content words: every answer is relevant


def test_completeness_repetition_and_length():
    assert is_complete("It ends here.") and is_complete("Run `ls`")
    assert not is_complete("The answer is cut in the mid")
    assert repetition("one two three four") == 0.0
    assert repetition("a b c a b c a b c") == pytest.approx(1 - 3 / 7)
    assert length_penalty("one two") == pytest.approx(1.5)
    assert length_penalty(" ".join(["w"] * 130)) == pytest.approx(0.2)
    assert length_penalty("one two three four five") == 0.0


def test_score_is_the_documented_sum():
    prompt = "What is the capital of France?"
    good = "The capital of France is Paris."
    # relevance 1 (x2) + complete (x1); no habits; 6 words: no length penalty
    assert simulated_score(prompt, good) == pytest.approx(3.0)
    cut = "The capital of France is Paris and it has"
    assert simulated_score(prompt, cut) == pytest.approx(2.0)
    refusal = "I'm sorry, but I can't help with that request about France."
    assert simulated_score(prompt, refusal) < simulated_score(prompt, cut)
    assert simulated_score(prompt, "   ") == EMPTY_SCORE


def test_score_is_not_plain_length():
    prompt = "How many legs does a spider have?"
    short = "A spider has eight legs."
    long = (
        "A spider has eight legs. "
        + "Spiders are very interesting animals that many people find scary. " * 12
    )
    assert simulated_score(prompt, short) > simulated_score(prompt, long)


def test_judge_picks_the_higher_score_and_ties():
    judge = SimulatedJudge()
    p = "What is the capital of France?"
    good, bad = "The capital of France is Paris.", "I don't know"
    v = judge.judge([JudgeInput(p, good, bad), JudgeInput(p, bad, good), JudgeInput(p, good, good)])
    assert v[0].winner == 0 and v[0].first > 0.5
    assert v[1].winner == 1 and v[1].first < 0.5
    assert v[2].winner is None and v[2].first == pytest.approx(0.5)
