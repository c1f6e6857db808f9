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


def test_tie_margin_calls_near_equal_answers_a_tie():
    p = "Why do leaves change colour in autumn?"
    a = "Leaves change colour because chlorophyll breaks down in autumn."  # every content word
    b = "Leaves change because chlorophyll breaks down in the cold."  # misses two of the four
    gap = simulated_score(p, a) - simulated_score(p, b)
    assert gap == pytest.approx(1.0)  # 2.0 x (1 - 2/4)
    assert SimulatedJudge().judge([JudgeInput(p, a, b)])[0].winner == 0
    assert SimulatedJudge(tie_margin=0.9).judge([JudgeInput(p, a, b)])[0].winner == 0
    tied = SimulatedJudge(tie_margin=1.1).judge([JudgeInput(p, a, b), JudgeInput(p, b, a)])
    assert [v.winner for v in tied] == [None, None]
    assert tied[0].first > 0.5  # the confidence still leans to the better answer


def test_tie_margin_is_for_the_simulated_judge_only(tmp_path):
    from alignkit.errors import ConfigError
    from alignkit.feedback.config import JudgeConfig

    JudgeConfig(judge="simulated", tie_margin=0.3).validate()
    with pytest.raises(ConfigError, match="tie-margin"):
        JudgeConfig(judge="some/model", tie_margin=0.3).validate()
    with pytest.raises(ConfigError, match="tie-margin"):
        JudgeConfig(judge="simulated", tie_margin=-1).validate()


def test_relevance_counts_the_request_not_the_system_message_or_role_labels():
    from alignkit.feedback.judges.simulated import request_text

    chat = "System: Answer in two or three sentences.\n\nUser: What is the capital of France?"
    assert request_text(chat) == "What is the capital of France?"
    assert relevance(chat, "The capital of France is Paris.") == 1.0  # not 2/6: system words do not count
    turns = "User: Tell me about bees.\n\nAssistant: Bees make honey.\n\nUser: And wasps?"
    assert request_text(turns) == "Tell me about bees.\n\nBees make honey.\n\nAnd wasps?"
    plain = "System administrators: what is uptime?"  # no role label at the start: plain text, kept whole
    assert request_text(plain) == plain
