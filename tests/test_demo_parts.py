"""The demo's pieces that need no model: its prompt sets and how the comparison counts wins."""

from __future__ import annotations

import pytest

from alignkit.demo.compare import _cross_wins, _row
from alignkit.demo.data import DEMO_PROMPTS, all_demo_prompts, demo_prompt_sets
from alignkit.demo.prompts import EVERYDAY_PROMPTS


def test_prompt_sets_are_disjoint_and_cover_every_prompt():
    prompts = all_demo_prompts()
    assert len(prompts) == len(set(prompts)) >= len(DEMO_PROMPTS) + len(EVERYDAY_PROMPTS)
    for held_out in (24, 100, 120):
        train, held = demo_prompt_sets(held_out)
        assert len(held) == held_out and not set(train) & set(held)
        assert sorted(train + held) == sorted(prompts)
    # held-out prompts are spread over the whole list, not its head
    _, held = demo_prompt_sets(120)
    assert prompts.index(held[-1]) > 0.9 * len(prompts)
    with pytest.raises(ValueError):
        demo_prompt_sets(len(prompts))


def test_cross_wins_compare_every_answer_with_every_base_answer_per_prompt():
    method = {"a": [2.0, 0.0], "b": [1.0, 1.0], "c": [5.0]}
    base = {"a": [1.0, 1.0], "b": [1.0, 3.0], "d": [0.0]}
    # a: 2>1, 2>1, 0<1, 0<1 -> 0.5; b: tie, loss, tie, loss -> 0.25; c and d have no counterpart
    assert _cross_wins(method, base) == [0.5, 0.25]


def test_row_verdict_needs_two_standard_errors():
    clear = _row("m", [1.0] * 30 + [0.0] * 10, 1.0, 1.0, 0.1, 50.0, "sampled")
    assert clear["win_rate"] == 0.75 and clear["verdict"] == "beats base"
    close = _row("m", [1.0, 0.0] * 20 + [1.0], 1.0, 1.0, 0.1, 50.0, "sampled")
    assert close["verdict"] == "no clear difference"
    worse = _row("m", [0.0] * 30 + [1.0] * 10, 1.0, 1.0, 0.1, 50.0, "sampled")
    assert worse["verdict"] == "worse than base"


def test_demo_options_are_checked_up_front():
    from alignkit.demo.config import DemoConfig
    from alignkit.errors import ConfigError

    DemoConfig().validate()
    for bad in ({"rm_eval_fraction": 1.0}, {"temperature": 0.0},
                {"grpo_group_size": 1}, {"candidate_prompts": 0}, {"grpo_mini_batches": 3}):  # fmt: skip
        with pytest.raises(ConfigError):
            DemoConfig(**bad).validate()


def test_too_many_held_out_prompts_is_a_one_line_error(tmp_path, capsys):
    from alignkit.cli import main

    rc = main(["demo", "--eval-prompts", str(len(all_demo_prompts())), "--output", str(tmp_path / "d")])
    assert rc == 2
    assert "--eval-prompts must be below" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before any stage ran
