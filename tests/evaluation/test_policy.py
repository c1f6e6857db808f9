"""`alignkit eval policy` on a tiny model: win rates, KL from samples, gold beside proxy, habits."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.evaluation.compare import judge_wins, score_summary, std, win_from_scores
from alignkit.feedback.judges.base import Verdict
from factories import make_policy, make_reward_model

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["What is the capital of France?", "Name a colour.", "How many legs has a cat?", "Say hello."]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def _run(args, capsys):
    rc = main(["eval", "policy", *args, "--json", "--max-new-tokens", "6", "--dtype", "fp32", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def test_identical_policy_ties_and_has_zero_kl(tiny_model_dir, prompts_file, tmp_path, capsys):
    policy = make_policy(tmp_path / "same", tiny_model_dir, 0.0)
    rm = make_reward_model(tmp_path / "rm", tiny_model_dir)
    out = _run(
        [
            "--policy",
            str(policy),
            "--prompts",
            str(prompts_file),
            "--reward-model",
            str(rm),
            "--gold-judge",
            "simulated",
            "--n-samples",
            "2",
            "--output",
            str(tmp_path / "a.jsonl"),
        ],
        capsys,
    )
    # adapter B = 0: the policy IS the reference, so the same seed gives the same answers
    assert out["kl"] == pytest.approx(0.0, abs=1e-5)
    assert out["win_rate"] == 0.5 and out["answers"] == 8
    assert out["proxy"]["mean"] == pytest.approx(out["proxy"]["reference_mean"], abs=1e-5)
    (only,) = out["proxy"]["per_model"].values()  # one reward model: its own mean is the combined mean
    assert only["policy"] == pytest.approx(out["proxy"]["mean"], abs=1e-5)
    assert out["gold"]["win_rate"] == 0.5
    assert set(out["policy_stats"]["habits"]) == {
        "refusal",
        "apology",
        "ai_disclaimer",
        "list_summary_padding",
        "trailing_filler",
    }
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all(x["policy"] == x["reference"] for x in lines)


def test_changed_policy_has_positive_kl_and_judged_win_rate(tiny_model_dir, prompts_file, tmp_path, capsys):
    policy = make_policy(tmp_path / "moved", tiny_model_dir, 0.5)
    out = _run(
        [
            "--policy",
            str(policy),
            "--prompts",
            str(prompts_file),
            "--judge",
            "simulated",
            "--n-samples",
            "4",
            "--refusal-prompts",
            str(prompts_file),
        ],
        capsys,
    )
    assert out["kl"] > 0.05  # a large random adapter moves the distribution
    assert out["mean_reward"] is None and out["win_rate_by"] == "judge: simulated"
    assert 0.0 <= out["win_rate"] <= 1.0
    assert set(out["over_refusal"]) == {"prompts", "policy", "reference"}


def test_bad_options_are_one_line_errors(tiny_model_dir, prompts_file, tmp_path, capsys):
    assert main(["eval", "policy", "--policy", str(tiny_model_dir), "--prompts", str(prompts_file)]) == 2
    assert "--reward-model DIR or --judge" in capsys.readouterr().err
    # a full model has no adapter to switch off: the reference must be named
    rc = main(
        [
            "eval",
            "policy",
            "--policy",
            str(tiny_model_dir),
            "--prompts",
            str(prompts_file),
            "--judge",
            "simulated",
        ]
    )
    assert rc == 2 and "--reference MODEL" in capsys.readouterr().err


def test_win_rates_count_ties_half():
    assert win_from_scores([1, 2, 3], [0, 2, 4]) == [1.0, 0.5, 0.0]
    s = score_summary("x", [1.0, 3.0], [2.0, 2.0])
    assert s["win_rate"] == 0.5 and s["mean"] == 2.0 and s["std"] == pytest.approx(std([1.0, 3.0]))


class PositionJudge:
    """Always prefers the answer shown first: with swapping, every verdict must become a tie."""

    def judge(self, inputs):
        return [Verdict(0, first=0.9) for _ in inputs]


class LongerJudge:
    def judge(self, inputs):
        return [Verdict(0 if len(i.answer_a) > len(i.answer_b) else 1) for i in inputs]


def test_judge_wins_cancel_position_bias_and_follow_the_judge():
    prompts = ["p"] * 6
    assert judge_wins(PositionJudge(), prompts, ["a"] * 6, ["b"] * 6, swap=True) == [0.5] * 6
    assert judge_wins(LongerJudge(), prompts, ["long answer"] * 6, ["short"] * 6, swap=True) == [1.0] * 6
    assert judge_wins(LongerJudge(), prompts, ["s"] * 6, ["longer"] * 6, swap=False) == [0.0] * 6
