"""`alignkit demo` end to end on a tiny model: every stage runs, the table is honest, re-runs skip stages."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _args(model, out, *extra):
    return [
        "demo",
        "--model",
        str(model),
        "--output",
        str(out),
        "--eval-prompts",
        "4",
        "--candidate-prompts",
        "6",
        "--candidates",
        "3",
        "--max-new-tokens",
        "8",
        "--rm-steps",
        "2",
        "--best-of-n",
        "2",
        "--dpo-steps",
        "2",
        "--ppo-steps",
        "2",
        "--grpo-steps",
        "2",
        "--grpo-prompts",
        "2",
        "--grpo-group-size",
        "2",
        "--eval-samples",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "96",
        "--json",
        *extra,
    ]


def test_demo_runs_every_stage_and_resumes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(_args(tiny_model_dir, out)) == 0
    result = json.loads(capsys.readouterr().out)
    methods = {m["method"]: m for m in result["methods"]}
    assert set(methods) == {"base", "best-of-2", "dpo", "ppo", "grpo"}
    assert result["eval_prompts"] == 4
    assert methods["base"]["verdict"] == "the baseline" and methods["base"]["kl"] == 0.0
    assert methods["best-of-2"]["kl"] == pytest.approx(0.6931 - 0.5, abs=1e-3)  # log 2 - 1/2
    for name in ("dpo", "ppo", "grpo", "best-of-2"):
        m = methods[name]
        assert 0.0 <= m["win_rate"] <= 1.0
        assert m["verdict"] in ("beats base", "worse than base", "no clear difference")
    for path in (
        "labels.jsonl",
        "rm/report.json",
        "dpo/report.json",
        "ppo/report.json",
        "grpo/report.json",
        "best_of_n.jsonl",
        "results.json",
        "eval_dpo.jsonl",
        "eval_ppo.jsonl",
        "eval_grpo.jsonl",
    ):
        assert (out / path).exists(), path
    assert list((out / "plots").glob("*.png"))
    # Labels are split by prompt: no held-out pair shares a prompt with a training pair.
    from alignkit.demo.pipeline import _prompt_key

    prompts = [
        {_prompt_key(json.loads(line)) for line in (out / "data" / name).read_text().splitlines()}
        for name in ("labels_train.jsonl", "labels_eval.jsonl")
    ]
    assert prompts[0] and prompts[1] and not prompts[0] & prompts[1]
    assert all('"system"' in p for p in prompts[0])  # the demo's system message reaches every stage
    # The annotator calls pairs within --tie-margin (default 0.25) ties: never trained on, counted apart.
    from alignkit.data.records import Message
    from alignkit.feedback.judges.base import conversation_text
    from alignkit.feedback.judges.simulated import simulated_score

    def gap(prompt, first, second):
        text = conversation_text(tuple(Message(**m) for m in prompt), "user")
        return abs(simulated_score(text, first[-1]["content"]) - simulated_score(text, second[-1]["content"]))

    events = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    ties = [e["tied"] for e in events if e["event"] == "tie"]
    labels = [e for e in events if e["event"] == "label"]
    assert labels and all(gap(e["prompt"], e["chosen"], e["rejected"]) > 0.25 for e in labels)
    assert all(gap(t["prompt"], *t["responses"]) <= 0.25 for t in ties)
    held = [
        json.loads(line) for line in (out / "data" / "labels_eval.jsonl").read_text().splitlines() if line
    ]
    held_ties = sum(e["event"] == "tie" for e in held)
    assert result["reward_model"]["eval_ties"] == held_ties
    # Every stage is done: a second run skips them all and prints the same table.
    assert main(_args(tiny_model_dir, out)) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert again["methods"] == result["methods"]
    assert "done already" in captured.err
    assert again["stage_seconds"] == {}
    # --redo runs one stage afresh (its run dir is replaced, not refused as "already holds a run")
    before = (out / "dpo" / "report.json").stat().st_mtime_ns
    assert main(_args(tiny_model_dir, out, "--stage", "dpo", "--redo", "--quiet")) == 0
    assert "alignkit dpo" not in capsys.readouterr().err  # --quiet reaches the stage's command too
    assert (out / "dpo" / "report.json").stat().st_mtime_ns > before
    from alignkit import console

    assert console.is_quiet()  # and the demo stays quiet after the stage (main() does not reset it)
    console.set_quiet(False)


def test_demo_resumes_a_stage_stopped_inside(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(_args(tiny_model_dir, out, "--stage", "prompts")) == 0
    for stage in ("candidates", "labels"):
        assert main(_args(tiny_model_dir, out, "--stage", stage)) == 0
    assert main(_args(tiny_model_dir, out, "--stage", "rm")) == 0
    (out / "rm" / "report.json").unlink()  # as if stopped after the last checkpoint, before the report
    capsys.readouterr()
    assert main(_args(tiny_model_dir, out, "--stage", "rm")) == 0
    assert "--resume" in capsys.readouterr().err
    assert (out / "rm" / "report.json").exists()


def test_demo_failed_stage_names_itself(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(_args(tiny_model_dir, out, "--stage", "rm"))  # no labels yet: the rm stage cannot run
    err = capsys.readouterr().err
    assert rc == 2
    assert "demo stage 'rm' failed" in err and "alignkit demo --stage rm --redo" in err
