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


# ------------------------------------------------------------------------- issue 24.5: KL, stderr, unparsed
def test_kl_caveat_names_top_p_and_greedy():
    """Guards issue 24.5a: with --top-p < 1 or temperature 0 the sampled KL is not the KL of the sampling
    distribution; `kl_caveat` says why (a warning and `kl_note` in the JSON), None otherwise."""
    from alignkit.evaluation.policy import kl_caveat

    assert kl_caveat(1.0, 1.0) is None and kl_caveat(0.7, 1.0) is None
    assert "--top-p 0.9" in kl_caveat(1.0, 0.9)
    assert "greedy" in kl_caveat(0.0, 1.0)


def test_win_rate_stderr_is_the_standard_error_of_per_prompt_means():
    """Guards issue 24.5b: two answers to one prompt are not independent. Prompt 0 wins both, prompt 1 loses
    both: per-prompt means [1, 0], stderr = std([1, 0]) / sqrt(2) = 0.5 (not std([1, 1, 0, 0]) / 2 = 0.29)."""
    from alignkit.evaluation.compare import win_summary

    s = win_summary([1.0, 1.0, 0.0, 0.0], [0, 0, 1, 1])
    assert s["win_rate"] == 0.5 and s["win_rate_stderr"] == pytest.approx(0.5)
    assert win_summary([1.0, 1.0, 0.0, 0.0])["win_rate_stderr"] == pytest.approx(std([1, 1, 0, 0]) / 2)
    by_scores = score_summary("x", [2.0, 3.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0, 0, 1, 1])
    assert by_scores["win_rate_stderr"] == pytest.approx(0.5)


class UnparsedJudge:
    """No parsable verdict on the first prompt; otherwise the longer answer wins."""

    def judge(self, inputs):
        return [
            Verdict(None, problem="unparsed")
            if i.prompt == PROMPTS[0]
            else Verdict(0 if len(i.answer_a) > len(i.answer_b) else 1)
            for i in inputs
        ]


def test_unparsed_verdicts_are_dropped_and_counted_not_ties():
    """Guards issue 24.5c: an unparsed judge verdict is no outcome; it was scored 0.5 like a tie."""
    from alignkit.evaluation.compare import win_summary

    wins = judge_wins(UnparsedJudge(), [PROMPTS[0], PROMPTS[1]], ["long answer"] * 2, ["short"] * 2)
    assert wins == [None, 1.0]
    assert win_summary(wins) == {"win_rate": 1.0, "win_rate_stderr": 0.0, "judged": 1, "unparsed": 1}


def test_eval_policy_reports_kl_note_clustered_stderr_and_unparsed(
    tiny_model_dir, prompts_file, tmp_path, capsys, monkeypatch
):
    """Issue 24.5 end to end: `kl_note` with --top-p 0.9, the proxy's stderr over per-prompt means with
    --n-samples 2, and a judge's unparsed verdicts counted and left out of its win rate."""
    import alignkit.evaluation.policy as policy_eval
    from alignkit.evaluation.compare import cluster_means, stderr, win_from_scores

    monkeypatch.setattr(policy_eval, "make_pairwise_judge", lambda spec, cfg: UnparsedJudge())
    policy = make_policy(tmp_path / "moved", tiny_model_dir, 0.5)
    rm = make_reward_model(tmp_path / "rm", tiny_model_dir)
    out = _run(
        ["--policy", str(policy), "--prompts", str(prompts_file), "--reward-model", str(rm), "--judge", "stub",
         "--n-samples", "2", "--top-p", "0.9", "--output", str(tmp_path / "a.jsonl")],
        capsys,
    )  # fmt: skip
    assert out["kl_is_sampling_kl"] is False and "--top-p 0.9" in out["kl_note"]
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    wins = win_from_scores([x["proxy_policy"] for x in lines], [x["proxy_reference"] for x in lines])
    per_prompt = cluster_means(wins, [PROMPTS.index(x["prompt"]) for x in lines])
    assert len(per_prompt) == 4 and out["proxy"]["win_rate_stderr"] == pytest.approx(stderr(per_prompt))
    judged = out["judge"]
    assert judged["unparsed"] == 2 and judged["judged"] == 6  # both answers to the first prompt
    assert out["win_rate"] == judged["win_rate"] and 0.0 <= judged["win_rate"] <= 1.0


def test_gate_gives_the_gate_models_own_score_as_its_help_says(tiny_model_dir, tmp_path):
    """Guards issue 24.6: --gate's help said "a fixed penalty", but eval policy gives an answer below the
    threshold the gate model's own score (no penalty option exists here)."""
    from alignkit.config import field_help
    from alignkit.evaluation.policy import reward_scorer
    from alignkit.evaluation.policy_config import EvalPolicyConfig

    assert "own score" in field_help(EvalPolicyConfig, "gate") and "penalty" not in field_help(
        EvalPolicyConfig, "gate"
    )
    a = make_reward_model(tmp_path / "a", tiny_model_dir, seed=1)
    b = make_reward_model(tmp_path / "b", tiny_model_dir, seed=2)
    specs = [f"a={a}", f"b={b}"]
    gated = reward_scorer(specs, [], "sum", "b:1e9", "fp32", 4)  # every answer is below the threshold
    scores = gated.score(PROMPTS[:2], ["Paris.", "Blue."], [True, True])
    assert gated.last_per_model is not None
    assert sum(scores) / 2 == pytest.approx(gated.last_per_model["b"], abs=1e-5)
    assert sum(scores) / 2 != pytest.approx(gated.last_per_model["a"], abs=1e-5)


def test_reference_answers_are_sampled_once_and_equal_a_fresh_sampling(
    tiny_model_dir, prompts_file, tmp_path, monkeypatch
):
    from alignkit.evaluation import policy as evaluation
    from alignkit.evaluation.policy_config import EvalPolicyConfig

    calls = []
    real_sample = evaluation.sample
    monkeypatch.setattr(evaluation, "sample", lambda *a, **k: calls.append(1) or real_sample(*a, **k))

    def cfg(run, name, **kw):
        out = tmp_path / f"{name}.jsonl"
        return EvalPolicyConfig(
            policy=str(run), prompts=str(prompts_file), judge="simulated", n_samples=2, max_new_tokens=6,
            dtype="fp32", show=0, output=str(out), overwrite=True, **kw,
        )  # fmt: skip

    a = make_policy(tmp_path / "a", tiny_model_dir, 0.5)
    b = make_policy(tmp_path / "b", tiny_model_dir, 0.7)
    shared: dict = {}
    evaluation.run_eval_policy(cfg(a, "a"), shared)
    evaluation.run_eval_policy(cfg(b, "b"), shared)
    assert len(calls) == 3 and len(shared) == 1  # policy a, reference, policy b
    evaluation.run_eval_policy(cfg(b, "b_fresh"))
    evaluation.run_eval_policy(cfg(b, "b_seed", seed=7), shared)  # another seed: sampled again
    assert len(calls) == 7 and len(shared) == 2

    def side(name, key):
        return [json.loads(x)[key] for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]

    assert side("b", "reference") == side("b_fresh", "reference") == side("a", "reference")
    assert side("b", "policy") == side("b_fresh", "policy")
