"""`alignkit eval instructions`: judging --answers files, generating greedily on the tiny model, the errors."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.errors import ConfigError, DataError, UserError
from alignkit.evaluation.instructions import run_eval_instructions
from alignkit.evaluation.instructions_config import EvalInstructionsConfig
from factories import make_policy

PROMPTS = [
    {"key": 1, "prompt": "Write a poem. Do not use any commas.", "instruction_id_list": ["punctuation:no_comma"],
     "kwargs": [{}]},
    {"key": 2, "prompt": "Describe a cat in quotes, in at least 4 words.",
     "instruction_id_list": ["startend:quotation", "length_constraints:number_words"],
     "kwargs": [{}, {"relation": "at least", "num_words": 4, "keywords": None}]},  # HF style: a null key
    {"key": 3, "prompt": "Say hello in lower case.", "instruction_id_list": ["change_case:english_lowercase"],
     "kwargs": [{}]},
]  # fmt: skip
ANSWERS = {
    PROMPTS[0]["prompt"]: "Roses are red and violets are blue",  # followed
    PROMPTS[1]["prompt"]: 'Sure:\n"A small soft cat"',  # quotation loose only; 4 words strict
    PROMPTS[2]["prompt"]: "Hello, how are you today my friend?",  # not lower case
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def prompts_file(tmp_path):
    return write_jsonl(tmp_path / "ifeval.jsonl", PROMPTS)


@pytest.fixture
def answers_file(tmp_path):
    return write_jsonl(tmp_path / "answers.jsonl", [{"prompt": p, "response": a} for p, a in ANSWERS.items()])


def test_answers_are_judged_strict_and_loose(prompts_file, answers_file, tmp_path):
    out = tmp_path / "judged.jsonl"
    result = run_eval_instructions(
        EvalInstructionsConfig(prompts=str(prompts_file), answers=str(answers_file), output=str(out))
    )
    assert (result["prompts"], result["instructions"]) == (3, 4)
    assert result["prompt_strict"] == pytest.approx(1 / 3)
    assert result["inst_strict"] == pytest.approx(2 / 4)
    assert result["prompt_loose"] == pytest.approx(2 / 3)
    assert result["inst_loose"] == pytest.approx(3 / 4)
    assert result["by_type"]["startend:quotation"] == {"instructions": 1, "strict": 0.0, "loose": 1.0}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["key"] for line in lines] == [1, 2, 3]
    assert lines[1]["strict"] == [False, True] and lines[1]["loose"] == [True, True]
    assert lines[1]["response"] == ANSWERS[PROMPTS[1]["prompt"]] and "finished" not in lines[1]

    again = run_eval_instructions(EvalInstructionsConfig(prompts=str(prompts_file), answers=str(out)))
    assert {k: again[k] for k in ("prompt_strict", "inst_loose")} == {
        k: result[k] for k in ("prompt_strict", "inst_loose")
    }


def test_sample_output_is_read_as_answers(prompts_file, tmp_path):
    rows = [
        {
            "prompt": [{"role": "user", "content": p}],
            "candidates": [{"text": a, "finished": True, "tokens": 9}],
        }
        for p, a in reversed(ANSWERS.items())  # order does not matter: matched by the prompt's text
    ]
    result = run_eval_instructions(
        EvalInstructionsConfig(
            prompts=str(prompts_file), answers=str(write_jsonl(tmp_path / "s.jsonl", rows))
        )
    )
    assert result["inst_strict"] == pytest.approx(2 / 4)


def test_missing_answer_and_bad_records_are_user_errors(prompts_file, answers_file, tmp_path):
    partial = write_jsonl(tmp_path / "partial.jsonl", [{"prompt": PROMPTS[0]["prompt"], "response": "x"}])
    with pytest.raises(UserError, match="no answer to 2 of 3 prompts"):
        run_eval_instructions(EvalInstructionsConfig(prompts=str(prompts_file), answers=str(partial)))

    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "hi"}])
    with pytest.raises(DataError, match=r"plain\.jsonl:1: no instruction_id_list column"):
        run_eval_instructions(EvalInstructionsConfig(prompts=str(plain), answers=str(answers_file)))

    bad = write_jsonl(tmp_path / "bad.jsonl", [PROMPTS[0], {**PROMPTS[1], "kwargs": [{}, {"num_words": 4}]}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: .*needs the argument 'relation'"):
        run_eval_instructions(EvalInstructionsConfig(prompts=str(bad), answers=str(answers_file)))

    (tmp_path / "taken.jsonl").write_text("x\n")
    with pytest.raises(UserError, match="already exists"):
        run_eval_instructions(
            EvalInstructionsConfig(
                prompts=str(prompts_file), answers=str(answers_file), output=str(tmp_path / "taken.jsonl")
            )
        )
    with pytest.raises(ConfigError, match="drop --policy / --model"):
        run_eval_instructions(EvalInstructionsConfig(prompts=str(prompts_file), answers="a", model="m"))


def test_cli_json_and_one_line_error(prompts_file, answers_file, tmp_path, capsys):
    assert (
        main(
            ["eval", "instructions", "--prompts", str(prompts_file), "--answers", str(answers_file), "--json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for key in (
        "prompt_strict",
        "inst_strict",
        "prompt_loose",
        "inst_loose",
        "prompts",
        "by_type",
        "seconds",
    ):
        assert key in result
    assert result["prompts"] == 3

    missing = str(tmp_path / "none.jsonl")
    assert main(["eval", "instructions", "--prompts", str(prompts_file), "--answers", missing]) == 2
    err = capsys.readouterr().err
    assert "none.jsonl" in err and "Traceback" not in err


def test_greedy_answers_from_the_tiny_model_do_not_depend_on_the_batch(
    prompts_file, tiny_model_dir, tmp_path, one_thread
):
    cfg = dict(prompts=str(prompts_file), model=str(tiny_model_dir), max_new_tokens=6, dtype="fp32")
    wide = run_eval_instructions(EvalInstructionsConfig(**cfg, output=str(tmp_path / "a.jsonl")))
    narrow = run_eval_instructions(
        EvalInstructionsConfig(**cfg, batch_size=1, memory_budget_gb=1e-9, output=str(tmp_path / "b.jsonl"))
    )
    assert (wide["prompts"], wide["max_new_tokens"], wide["model"]) == (3, 6, str(tiny_model_dir))
    assert narrow["max_rows_in_flight"] == 1 and wide["max_rows_in_flight"] == 3
    a = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["response"] for x in a] == [x["response"] for x in b]  # greedy: the same answers
    assert all(x["tokens"] <= 6 and isinstance(x["finished"], bool) for x in a)
    assert wide["unfinished"] == sum(not x["finished"] for x in a) / 3
    assert 0.0 <= wide["inst_strict"] <= 1.0 and wide["generate_s"] >= 0.0


def test_policy_run_is_loaded_like_eval_policy(prompts_file, tiny_model_dir, tmp_path, one_thread):
    policy = make_policy(tmp_path / "policy", tiny_model_dir, 0.5)
    result = run_eval_instructions(
        EvalInstructionsConfig(
            prompts=str(prompts_file), policy=str(policy), max_new_tokens=4, dtype="fp32", limit=2
        )
    )
    assert (result["prompts"], result["model"]) == (2, str(policy))
