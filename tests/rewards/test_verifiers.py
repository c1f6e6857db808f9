"""Built-in rule rewards: the maths final-answer match, the length band, and the registry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alignkit.data.load import load_records
from alignkit.errors import ConfigError
from alignkit.rewards.functions import RewardFunction, record_columns
from alignkit.rewards.verifiers import builtin_reward_functions, resolve_reward_fn, reward_function_members
from alignkit.rewards.verifiers.length import band_score, length_reward
from alignkit.rewards.verifiers.math import final_answer, last_boxed, math_reward, reference_answer

GSM8K = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "gsm8k.jsonl"

# (completion, reference, reward)
MATH_CASES = [
    ("3 + 2 = 5. #### 5", "3 + 2 = <<3+2=5>>5\n#### 5", 1.0),
    ("He has 5 apples.", "#### 5", 1.0),
    ("He has 6 apples.", "#### 5", 0.0),
    ("First 2 boxes, then 3 more, so 12 pens in total.", "#### 12", 1.0),
    ("The total is 1,000 dollars.", "#### 1000", 1.0),
    ("The total is $1,000.00", "#### 1000", 1.0),
    ("It costs $12.", "#### 12", 1.0),
    ("The temperature is -5 degrees.", "#### -5", 1.0),
    ("The temperature is −5 degrees.", "#### -5", 1.0),
    ("The change is -5.", "#### 5", 0.0),
    ("The answer is 0.50", "#### 0.5", 1.0),
    ("The answer is .5", "#### 0.5", 1.0),
    ("The answer is 1/2", "#### 0.5", 1.0),
    ("The answer is 2/3", "#### 0.67", 0.0),
    ("It is 3.25 km away", "#### 3.25", 1.0),
    ("It is 3.2 km away", "#### 3.25", 0.0),
    ("Between 3-4 hours, so 4", "#### 4", 1.0),
    ("That is 50% of them", "#### 50", 1.0),
    ("Answer: 7 #### 7\nHope that helps with 2 questions.", "#### 7", 1.0),
    ("I am not sure.", "#### 7", 0.0),
    ("", "#### 7", 0.0),
    (r"So \boxed{42}. Check: 41 + 1", "#### 42", 1.0),
    (r"\boxed{\frac{1}{2}}", r"The answer is \boxed{\dfrac{1}{2}}.", 1.0),
    (r"\boxed{\frac{1}{3}}", r"\boxed{\frac{1}{2}}", 0.0),
    (r"\boxed{-\frac{3}{4}}", "-0.75", 1.0),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\boxed{\dfrac{\sqrt{2}}{2}}", 1.0),
    (r"\boxed{x^2 + 1}", r"\boxed{x^{2}+1}", 1.0),
    (r"\boxed{(1, 2)}", r"\boxed{(1,2)}", 1.0),
    (r"\boxed{5 \text{ apples}}", "5", 1.0),
    (r"\boxed{x = 3}", "3", 1.0),
    (r"\boxed{10^\circ}", "10", 1.0),
    (r"first \boxed{1} then \boxed{2}", "2", 1.0),
    ("12 cm", "12 cm", 1.0),
    ("The answer is 5", "The answer is 5", 1.0),
    ("1,234,567 grains", "#### 1234567", 1.0),
]


@pytest.mark.parametrize("completion, reference, expected", MATH_CASES)
def test_math_final_answer_match(completion, reference, expected):
    assert math_reward(["q"], [completion], answer=[reference]) == [expected]


def test_math_cases_are_many():
    assert len(MATH_CASES) >= 25


def test_extraction_details():
    assert last_boxed(r"a \boxed{\frac{\sqrt{2}}{2}} b") == r"\frac{\sqrt{2}}{2}"
    assert last_boxed(r"\boxed{unclosed") is None
    assert final_answer("no numbers here") is None
    assert reference_answer("3 + 2 = <<3+2=5>>5\n#### 5") == "5"
    assert reference_answer("The answer is 12") == "12"


def test_no_reference_gives_none_and_columns_are_tried_in_order():
    """None without a reference; ``answer`` before ``solution`` before ``reference``; numbers as references."""
    out = math_reward(
        ["q"] * 4,
        ["5", "5", "5", "5"],
        answer=[None, "", "#### 5", 5],
        solution=[None, r"\boxed{5}", r"\boxed{6}", None],
    )
    assert out == [None, 1.0, 1.0, 1.0]
    assert math_reward(["q"], ["5"]) == [None]
    assert math_reward(["q"], ["5"], reference=["#### 6"]) == [0.0]


def test_trl_conversational_completions():
    completion = [{"role": "assistant", "content": r"\boxed{\frac{1}{3}}"}]
    assert math_reward(completions=[completion], solution=[r"\frac{1}{3}"]) == [1.0]


def test_gsm8k_fixture_through_the_loader():
    """The loader keeps GSM8K's answer column as ``reference``; it flows to the verifier as a keyword list."""
    records = load_records(GSM8K, kind="prompt").records
    columns = record_columns(records, 2)
    fn = resolve_reward_fn("math")
    completions = ["3 + 2 = 5, so he has 5 apples.", "He has 6.", "3 boxes of 4 is 12 pens.", r"\boxed{7}"]
    prompts = [r.prompt[-1].content for r in records for _ in range(2)]
    assert fn(prompts, completions, **columns) == [1.0, 0.0, 1.0, 0.0]


# ------------------------------------------------------------------------------------------ length


def test_length_band_in_words():
    """Band 2..4 words: inside 1.0; below n/min (0 when empty); above falls to 0 at twice max."""
    words = ["", "one", "one two", "a b c d", "a b c d e f", "a b c d e f g h", "a " * 12]
    assert length_reward(completions=words, min=2, max=4) == [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0]


def test_length_slack_and_per_row_columns():
    assert length_reward(completions=["a b c d e f"], min=2, max=4, slack=4) == [0.5]
    out = length_reward(completions=["a b c", "a b c"], min=[1, 6], max=[3, 8])
    assert out == [1.0, 0.5]
    assert band_score(0, 0, 10) == 1.0


def test_length_in_tokens_uses_completion_ids():
    ids = [[1] * 10, [1] * 30]
    assert length_reward(completions=["x", "y"], completion_ids=ids, min=5, max=20, unit="tokens") == [
        1.0,
        0.5,
    ]
    with pytest.raises(ConfigError, match="needs completion_ids"):
        length_reward(completions=["x"], unit="tokens")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min": 5, "max": 1}, "min .5. is above max .1."),
        ({"min": "many"}, "min must be a number"),
        ({"max": -1}, "max must be a finite number >= 0"),
        ({"unit": "chars"}, "unit must be one of words, tokens"),
    ],
)
def test_length_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RewardFunction(length_reward, "length")(["p"], ["a"], **kwargs)


def test_length_defaults():
    assert length_reward(completions=["w " * 50]) == [1.0]
    assert math.isclose(length_reward(completions=["w " * 10])[0], 0.5)


# ------------------------------------------------------------------------------------------ registry


def test_registry_names_and_resolution(tmp_path):
    assert set(builtin_reward_functions()) == {"math", "length", "ifeval"}
    fn = resolve_reward_fn("math")
    assert (fn.name, fn.fn) == ("math", math_reward)
    (tmp_path / "mine.py").write_text("def mine(completions, **kw):\n    return [0.0] * len(completions)\n")
    assert resolve_reward_fn(f"{tmp_path}/mine.py:mine").name == "mine"
    with pytest.raises(ConfigError, match="unknown reward function 'ifevl': use a built-in"):
        resolve_reward_fn("ifevl")


def test_reward_function_members_with_weights_and_unique_names():
    members = reward_function_members(["math", "length", "math"], [1.0, 0.5, 2.0])
    assert [(m.name, m.weight) for m in members] == [("math", 1.0), ("length", 0.5), ("math-2", 2.0)]
    with pytest.raises(ConfigError, match="2 reward-function weights for 1 functions"):
        reward_function_members(["math"], [1.0, 2.0])
