"""Reward functions: loading from a spec, TRL's calling convention, result checks, errors, and the ensemble."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch

from alignkit.data.load import load_records
from alignkit.data.records import Message, Record, conversation
from alignkit.errors import ConfigError, UserError
from alignkit.rewards.ensemble import FunctionScorer, RewardMember, RewardSet, load_reward_set
from alignkit.rewards.functions import (
    RewardFunction,
    RewardFunctionError,
    RewardFunctionScorer,
    completion_text,
    function_member,
    load_reward_function,
    prompt_text,
    record_columns,
)
from alignkit.rewards.verifiers.length import length_reward

TRL_REWARD_LEN = """
def reward_len(completions, **kwargs):
    return [-abs(20 - len(c)) for c in completions]
"""


def write(tmp_path, name, source):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


# ------------------------------------------------------------------------------------------ loading


def test_trl_written_function_from_a_file_works_unchanged(tmp_path):
    """TRL's own example (completions and **kwargs only, called with keywords) gives TRL's numbers."""
    path = write(tmp_path, "rewards.py", TRL_REWARD_LEN)
    fn = load_reward_function(f"{path}:reward_len")
    assert fn.name == "reward_len"
    out = fn(["p", "q"], ["x" * 20, "x" * 25], completion_ids=[[1], [2]], difficulty=["easy", "hard"])
    assert out == [0.0, -5.0]


def test_two_files_with_the_same_name_do_not_collide(tmp_path):
    """Each file gets its own module name; a dataclass in the file works (it needs its module in sys.modules)."""
    a = write(
        tmp_path, "a/rewards.py", "def score(completions, **kw):\n    return [1.0 for _ in completions]\n"
    )
    b = write(
        tmp_path,
        "b/rewards.py",
        """
        from dataclasses import dataclass

        @dataclass
        class Two:
            value: float = 2.0

        def score(completions, **kw):
            return [Two().value for _ in completions]
        """,
    )
    assert load_reward_function(f"{a}:score")([""], ["x"]) == [1.0]
    assert load_reward_function(f"{b}:score")([""], ["x"]) == [2.0]


def test_load_from_a_module(tmp_path, monkeypatch):
    """``package.module:name`` imports through sys.path; a dotted name reaches a class attribute."""
    write(tmp_path, "myrewards/__init__.py", "")
    write(
        tmp_path,
        "myrewards/rules.py",
        """
        class Rules:
            @staticmethod
            def polite(completions, **kwargs):
                return [1.0 if "please" in c else 0.0 for c in completions]
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_reward_function("myrewards.rules:Rules.polite")
    assert fn.name == "polite"
    assert fn(["a", "b"], ["please", "no"]) == [1.0, 0.0]
    builtin = load_reward_function("alignkit.rewards.verifiers.length:length_reward")
    assert builtin(["p"], ["one two"], min=1, max=3) == [1.0]


@pytest.mark.parametrize(
    "make_spec, message",
    [
        (lambda t: f"{t}/missing.py:f", "no such file"),
        (lambda t: f"{t}/ok.py:nothing", "has no attribute 'nothing'"),
        (lambda t: f"{t}/ok.py:VALUE", "'VALUE' is a int, not callable"),
        (lambda t: f"{t}/broken.py:f", "import failed: ValueError: boom"),
        (lambda t: f"{t}/syntax.py:f", "import failed: SyntaxError"),
        (lambda t: "no_such_module_xyz.sub:f", "import failed: ModuleNotFoundError: No module named"),
        (lambda t: "just_a_name", "must look like FILE.py:NAME or MODULE:NAME"),
    ],
)
def test_load_errors_are_one_line_config_errors_naming_the_spec(tmp_path, make_spec, message):
    """Every loading failure is a ConfigError (exit 2) on one line that names the spec and what went wrong."""
    write(tmp_path, "ok.py", "VALUE = 3\n")
    write(tmp_path, "broken.py", "raise ValueError('boom\\nsecond line of the traceback text')\n")
    write(tmp_path, "syntax.py", "def f(:\n")
    spec = make_spec(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_reward_function(spec)
    text = str(caught.value)
    assert message in text
    assert spec in text
    assert "\n" not in text


# ------------------------------------------------------------------------------------------ text and columns


def test_prompts_and_completions_are_plain_text():
    """A conversation's prompt is its last user message; an answer is its assistant text."""
    prompt = conversation(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "2+2?"))
    assert prompt_text(prompt) == "2+2?"
    assert prompt_text("plain") == "plain"
    assert completion_text(conversation(("assistant", "4"))) == "4"
    assert completion_text("4") == "4"


def test_record_columns_repeat_per_answer_and_fill_missing_with_none(tmp_path):
    """Columns the loader keeps in Record.meta become keyword lists, one value per completion."""
    data = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": "What is 2+2?", "solution": "4", "level": 1},
        {"prompt": "What is 3+3?", "solution": "6"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    records = load_records(data, kind="prompt").records
    columns = record_columns(records, 2)
    assert columns == {"solution": ["4", "4", "6", "6"], "level": [1, 1, None, None]}
    assert record_columns(records, [1, 3])["solution"] == ["4", "6", "6", "6"]
    reserved = Record(prompt=(Message("user", "x"),), meta={"completions": 1, "trainer_state": 2, "ok": 3})
    assert record_columns([reserved]) == {"ok": [3]}


def test_columns_flow_from_records_to_the_function_through_a_reward_set(tmp_path):
    """A function in a RewardSet receives the record columns, completion_ids and trainer_state as keywords."""
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen.update(prompts=prompts, completions=completions, **kwargs)
        return [1.0] * len(completions)

    records = [Record(prompt=(Message("user", "Q1"),), meta={"answer": "4"})]
    columns = {**record_columns(records, 2), "completion_ids": [[5, 6], [7]], "trainer_state": "state"}
    rs = RewardSet([function_member(RewardFunction(spy, "spy"))])
    rs.score(["Q1", "Q1"], ["four", "4"], columns=columns)
    assert seen == {
        "prompts": ["Q1", "Q1"],
        "completions": ["four", "4"],
        "answer": ["4", "4"],
        "completion_ids": [[5, 6], [7]],
        "trainer_state": "state",
    }


# ------------------------------------------------------------------------------------------ results


def test_none_nan_bool_and_array_results():
    """None stays None, NaN becomes None, bools and numpy / torch values become floats."""
    fn = RewardFunction(lambda completions, **kw: [None, math.nan, True, np.float32(0.5)], "mixed")
    assert fn(["p"] * 4, ["a", "b", "c", "d"]) == [None, None, 1.0, 0.5]
    as_array = RewardFunction(lambda completions, **kw: np.array([1.0, 2.0]), "arr")
    assert as_array(["p", "p"], ["a", "b"]) == [1.0, 2.0]
    as_tensor = RewardFunction(lambda completions, **kw: torch.tensor([3.0]), "t")
    assert as_tensor(["p"], ["a"]) == [3.0]


@pytest.mark.parametrize(
    "result, message",
    [
        ([1.0, "high"], "returned 'high' (str) for completion 1"),
        ([1.0, math.inf], "returned 'inf' (float) for completion 1"),
        ([1.0], "returned 1 rewards for 2 completions"),
        ({"a": 1.0}, "must return a list of floats (or None), got dict"),
        (None, "must return a list of floats (or None), got NoneType"),
    ],
)
def test_bad_results_are_user_errors_naming_the_function_and_value(result, message):
    fn = RewardFunction(lambda completions, **kw: result, "judge_me")
    with pytest.raises(ConfigError) as caught:
        fn(["p", "p"], ["a", "b"])
    assert "reward function 'judge_me'" in str(caught.value)
    assert message in str(caught.value)


def test_async_function_is_awaited():
    async def later(completions, **kwargs):
        return [float(len(c)) for c in completions]

    assert RewardFunction(later, "later")(["p"], ["abc"]) == [3.0]


# ------------------------------------------------------------------------------------------ failures


def test_exception_names_function_index_sample_and_exception():
    """The failing completion is found row by row; the error is internal (exit 1), not a UserError."""

    def fragile(completions, **kwargs):
        return [1.0 / (0 if "boom" in c else 1) for c in completions]

    long = "boom " + "x" * 200
    fn = RewardFunction(fragile, "fragile")
    with pytest.raises(RewardFunctionError) as caught:
        fn(["p", "p", "p"], ["fine", "ok", long], answer=["1", "2", "3"])
    text = str(caught.value)
    assert not isinstance(caught.value, UserError)
    assert "reward function 'fragile' failed on completion 2" in text
    assert repr(long[:80]) in text and long[:81] not in text
    assert "ZeroDivisionError: float division by zero" in text
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_exception_only_on_the_whole_batch_names_the_batch():
    def needs_two(completions, **kwargs):
        if len(completions) < 2:
            raise RuntimeError("batch too small")
        raise KeyError("gold")

    with pytest.raises(RewardFunctionError, match=r"failed on the batch of 2 completions: KeyError: 'gold'"):
        RewardFunction(needs_two, "needs_two")(["p", "p"], ["a", "b"])
    with pytest.raises(ConfigError, match="min"):  # the user's errors pass through (exit 2)
        RewardFunction(lambda **kw: length_reward(min=5, max=1, **kw), "strict")(["p"], ["a"])


# ------------------------------------------------------------------------------------------ the ensemble


def fixed(values):
    """A reward-model stand-in that returns the given scores."""
    return FunctionScorer(lambda prompts, responses: torch.tensor(values[: len(responses)]))


def maybe(values):
    """A reward function returning ``values`` (None allowed)."""
    return function_member(RewardFunction(lambda completions, **kw: values[: len(completions)], "rule"), 2.0)


def test_function_member_combines_with_weight_and_none_makes_the_row_none():
    """sum: rm + 2 x rule; the row where the rule says None is NaN (no reward) under sum, min and gate."""
    for combine, gate, expected in [
        ("sum", None, [3.0, None, 3.0]),
        ("min", None, [1.0, None, 0.0]),
        ("gate", ("rule", 0.5), [1.0, None, 0.0]),  # rule 0 < 0.5 on row 2: the gate's own score 0
    ]:
        members = [RewardMember("rm", fixed([1.0, 2.0, 3.0])), maybe([1.0, None, 0.0])]
        rs = RewardSet(members, combine=combine, gate=gate)
        combined, per = rs.score(["a", "b", "c"], ["x", "y", "z"])
        got = [None if math.isnan(v) else v for v in combined.tolist()]
        assert got == expected, combine
        assert per["rule"][1].isnan() and per["rm"].tolist() == [1.0, 2.0, 3.0]


def test_reward_model_members_combine_as_before():
    """A member that does not abstain (reward models, FunctionScorer) keeps the old gate rule even on NaN."""
    members = [RewardMember("h", fixed([1.0, math.nan])), RewardMember("s", fixed([0.0, 0.0]))]
    combined, _ = RewardSet(members, combine="gate", gate=("s", 0.15), gate_penalty=-5.0).score(
        ["a", "b"], ["x", "y"]
    )
    assert combined.tolist() == [-5.0, -5.0]


def test_load_reward_set_takes_function_members_and_gates_on_them():
    """Reward functions alone make a set; the gate may name a function."""
    members = [
        maybe([1.0, 0.0]),
        function_member(RewardFunction(lambda completions, **kw: [5.0, 7.0], "len")),
    ]
    rs = load_reward_set([], combine="gate", gate="rule:0.5", functions=members)
    combined, _ = rs.score(["a", "b"], ["x", "y"])
    assert rs.names == ["rule", "len"]
    assert combined.tolist() == [5.0, 0.0]


def test_scorer_is_text_only_and_returns_nan_for_none():
    scorer = RewardFunctionScorer(RewardFunction(lambda completions, **kw: [None, 1], "r"))
    assert scorer.tokenizer is None
    out = scorer.score_text([conversation(("user", "q"))] * 2, ["a", "b"])
    assert out.dtype == torch.float32 and out[0].isnan() and out[1] == 1.0
