"""The local judge: log-probabilities of the answer names, batching, swap logic, templates, the command."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.cli import main
from alignkit.data.labels import read_label_records, read_labels
from alignkit.errors import ConfigError
from alignkit.feedback.judges.base import JudgeInput, PairOutcome, Verdict, combine, verdict_from_logps
from alignkit.feedback.judges.local import LocalJudge, choice_token_ids
from alignkit.feedback.templates import PRINCIPLES, builtin, load_template

INPUTS = [
    JudgeInput("What is 2+2?", "4", "5"),
    JudgeInput("Name a colour.", "Blue is a colour that many people like a lot.", "Dog"),
    JudgeInput("Say hi", "hi", "Hello there, how are you doing today?"),
]


@pytest.fixture
def judge(tiny_model, tokenizer):
    return LocalJudge(tiny_model, tokenizer, builtin("helpful"), ["A", "B"], name="tiny", batch_size=3)


def test_choice_tokens_are_single_tokens(tokenizer):
    for name in ("A", "B", "1", "2"):
        ids = choice_token_ids(tokenizer, name)
        assert ids and all(tokenizer.decode([i]).strip() == name for i in ids)


def test_decision_is_the_next_token_logprob_of_each_name(judge, tiny_model, tokenizer):
    """Recompute one verdict by hand: the log-softmax at the last prompt position, read at "A" and "B"."""
    [verdict] = judge.judge(INPUTS[:1])
    ids = judge.encode(INPUTS[0])[0]
    with torch.no_grad():
        logits = tiny_model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    logps = torch.log_softmax(logits, -1)
    expect = [torch.logsumexp(logps[torch.tensor(choice_token_ids(tokenizer, c))], 0).item() for c in "AB"]
    assert verdict.logps == pytest.approx(expect, abs=1e-4)
    assert verdict.first == pytest.approx(torch.sigmoid(torch.tensor(expect[0] - expect[1])).item(), abs=1e-5)
    assert verdict.winner == (0 if expect[0] > expect[1] else 1)
    assert 0 < verdict.mass <= 1


def test_batched_left_padded_equals_one_at_a_time(judge):
    batched = judge.judge(INPUTS)
    judge.batch_size = 1
    single = judge.judge(INPUTS)
    for b, s in zip(batched, single, strict=True):
        assert b.logps == pytest.approx(s.logps, abs=1e-4)


def test_the_prompt_goes_through_the_chat_template(judge):
    text = judge.prompt_text(INPUTS[0])
    assert "<|im_start|>user\n" in text and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "What is 2+2?" in text and "more helpful" in text


def test_long_inputs_are_cut_to_max_length(judge):
    judge.max_length = 300
    long = JudgeInput("short question", "word " * 400, "other answer")
    ids, truncated = judge.encode(long)
    assert truncated and len(ids) <= 300
    assert "Reply with a single character" in judge.tokenizer.decode(ids)  # the question is kept
    [verdict] = judge.judge([long])
    assert verdict.truncated


def test_verdict_from_logps():
    v = verdict_from_logps(-1.0, -2.0)
    assert v.winner == 0 and v.first == pytest.approx(1 / (1 + 2.718281828**-1), abs=1e-6)
    assert verdict_from_logps(-3.0, -1.0).winner == 1
    assert verdict_from_logps(-1.0, -1.0).winner is None


@pytest.mark.parametrize(
    ("ab", "ba", "mode", "expect"),
    [
        (Verdict(0, 0.8), None, "tie", ("label", 0, None)),
        (Verdict(0, 0.8), Verdict(1, 0.3), "tie", ("label", 0, True)),  # x first then second: x both times
        (Verdict(1, 0.2), Verdict(0, 0.9), "tie", ("label", 1, True)),  # y both times
        (Verdict(0, 0.7), Verdict(0, 0.7), "tie", ("tie", None, False)),  # always the first shown: position
        (Verdict(0, 0.7), Verdict(0, 0.7), "drop", ("skip", None, False)),
        (Verdict(None, problem="unparsed"), Verdict(0, 0.7), "tie", ("skip", None, None)),
    ],
)
def test_swap_combination(ab, ba, mode, expect):
    out: PairOutcome = combine(ab, ba, mode)
    assert (out.event, out.winner, out.consistent) == expect


def test_swap_probability_cancels_position():
    out = combine(Verdict(0, 0.9), Verdict(1, 0.3))
    assert out.p_first == pytest.approx((0.9 + 0.7) / 2)


def test_templates(tmp_path):
    for name in PRINCIPLES:
        text = builtin(name).render("P?", "first {answer_b}", "second", "A", "B")
        assert name in text and "first {answer_b}" in text and "[Answer B]\nsecond" in text
    custom = tmp_path / "t.txt"
    custom.write_text(
        'Which is kinder? JSON like {"x": 1} is fine.\n{prompt}\n1) {answer_a}\n2) {answer_b}\n'
    )
    assert "1) yes" in load_template(str(custom)).render("q", "yes", "no")
    custom.write_text("{prompt} {answer_a}")
    with pytest.raises(ConfigError, match=r"lacks \{answer_b\}"):
        load_template(str(custom))
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_template("kindest")


def test_judge_command_with_a_local_model_and_resume(candidates, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "ai.jsonl"
    args = [
        "judge",
        "--data",
        str(candidates),
        "--output",
        str(out),
        "--judge",
        str(tiny_model_dir),
        "--dtype",
        "fp32",
        "--swap",
        "--batch-size",
        "4",
        "--json",
        "--quiet",
    ]
    assert main([*args, "--limit", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["judged"] == 4 and summary["labels"] + summary["ties"] == 4
    assert summary["swap_consistency"] is not None and 0 < summary["mean_choice_mass"] <= 1
    assert main(args) == 0  # resumes: only the 2 left
    summary = json.loads(capsys.readouterr().out)
    assert summary["already_done"] == 4 and summary["judged"] == 2
    state = read_labels(out)
    items = [r["item_id"] for _, r in state.effective()]
    assert len(items) == len(set(items)) == 6
    row = state.rows[0][1]
    assert row["annotator"] == f"judge:{tiny_model_dir.name}" and "swap" in row["judge"]
    labels = [r for _, r in state.rows if r["event"] == "label"]
    for r in labels:  # chosen is the answer the (debiased) probability favours
        assert r["judge"]["p_chosen"] >= 0.5
    assert len(read_label_records(out)) == len(labels)


def test_judge_refuses_bad_template_and_host_port(candidates, tmp_path, capsys):
    out = str(tmp_path / "ai.jsonl")
    assert main(["judge", "--data", str(candidates), "--output", out, "--template", "nope"]) == 2
    assert main(["judge", "--data", str(candidates), "--output", out, "--judge", "localhost:8000/v1"]) == 2
    assert "looks like host:port" in capsys.readouterr().err


def test_judge_recipe_resolves():
    from pathlib import Path

    from alignkit.config import build_config
    from alignkit.feedback.config import JudgeConfig

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "judge.yaml"
    cfg = build_config(JudgeConfig, recipe, {"data": "c.jsonl", "output": "l.jsonl"})
    assert cfg.swap is True and cfg.template == "helpful"
