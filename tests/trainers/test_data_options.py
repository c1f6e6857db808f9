"""--format on every command that reads data, and what ppo says about a prompt file of pairs (issue 24).

"A file the detector cannot identify" is simulated by a detector that can tell nothing (the real one,
shown a record with unknown keys): its error and advice are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from alignkit.cli import app, main
from alignkit.config import build_config
from alignkit.data import load as load_module
from alignkit.data.formats import detect_format

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "rm_tiny.yaml"

# Every command that reads a data file (its own option names the file).
DATA_COMMANDS = [
    ("rm",),
    ("dpo",),
    ("kto",),
    ("sft",),
    ("ppo",),
    ("eval", "rm"),
    ("score",),
    ("eval", "policy"),
    ("sample",),
    ("label",),
    ("judge",),
    ("data", "inspect"),
]


def write_pairs(path: Path, n: int = 12) -> Path:
    rows = [
        {"prompt": f"What is {i} plus {i}?", "chosen": f"{i} plus {i} is {2 * i}.", "rejected": "No idea."}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def blind_detector(monkeypatch):
    """Format detection that can tell nothing: the real "cannot tell the data format" error, for any file."""

    def cannot_tell(samples, where):
        return detect_format([{"unknown": 1}], where)  # raises the real DataError

    monkeypatch.setattr(load_module, "detect_format", cannot_tell)


def options_of(*names: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in names:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts}


@pytest.mark.parametrize("names", DATA_COMMANDS, ids=" ".join)
def test_every_command_that_reads_data_has_format(names):
    """The unknown-format error advises `--format NAME`: every command that reads data must have it."""
    assert "--format" in options_of(*names)


def test_rm_trains_with_format_on_data_the_detector_cannot_identify(
    tmp_path, tiny_model_dir, capsys, blind_detector
):
    """Without --format: exit 2, advising --format; with it the run trains (--eval-data read as that format too)."""
    data = write_pairs(tmp_path / "pairs.jsonl")
    evals = write_pairs(tmp_path / "eval.jsonl", 4)
    args = ["rm", "-c", str(RECIPE), "-m", str(tiny_model_dir), "--data", str(data), "--max-steps", "1"]
    assert main([*args, "-o", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the data format" in err and "--format NAME" in err
    assert "--format" in options_of("rm")
    out = tmp_path / "run"
    rc = main([*args, "-o", str(out), "--format", "trl-preference", "--eval-data", str(evals), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (out / "reward_model").is_dir() and "eval_accuracy" in json.loads(captured.out)


def test_format_reaches_every_loader(tmp_path, blind_detector):
    """dpo/kto/sft, ppo, sample, eval policy, label and judge read --data/--prompts in the --format given."""
    from alignkit.evaluation.policy import read_prompts
    from alignkit.evaluation.policy_config import EvalPolicyConfig
    from alignkit.feedback.items import load_candidates
    from alignkit.sampling import run as sample_run
    from alignkit.sampling.config import SampleConfig
    from alignkit.trainers.dpo_config import DPOConfig
    from alignkit.trainers.online import inputs as online_inputs
    from alignkit.trainers.online.config import PPOConfig
    from alignkit.trainers.trl.data import load_train_eval

    data, evals = write_pairs(tmp_path / "pairs.jsonl"), write_pairs(tmp_path / "eval.jsonl", 3)
    fmt = {"format": "trl-preference"}
    train, held_out, stats = load_train_eval(
        build_config(DPOConfig, None, {"data": str(data), "eval_data": str(evals), **fmt}), "preference"
    )
    assert (len(train), len(held_out), stats.format) == (12, 3, "trl-preference")
    ppo = build_config(PPOConfig, None, {"prompts": str(data), "eval_data": str(evals), **fmt})
    assert [len(p) for p in online_inputs.load_prompts(ppo)] == [12, 3]
    assert (
        len(sample_run._load_prompts(build_config(SampleConfig, None, {"prompts": str(data), **fmt}))) == 12
    )
    policy_cfg = {"prompts": str(data), "policy": "p", "judge": "simulated", **fmt}
    assert len(read_prompts(build_config(EvalPolicyConfig, None, policy_cfg))[1]) == 12
    assert len(load_candidates(data, format="trl-preference").items) == 12


def test_ppo_says_when_its_prompts_come_from_preference_pairs(tmp_path, capsys):
    """`ppo --prompts PAIRS` trains on their prompts: one info line says so; a prompt file gets none."""
    from alignkit.trainers.online import inputs as online_inputs
    from alignkit.trainers.online.config import PPOConfig

    pairs = write_pairs(tmp_path / "pairs.jsonl")
    online_inputs.load_prompts(build_config(PPOConfig, None, {"prompts": str(pairs)}))
    err = capsys.readouterr().err
    assert f"{pairs} holds preference data" in err and "answers in it are not used" in err
    assert len(err.strip().splitlines()) == 1
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(3)))
    online_inputs.load_prompts(build_config(PPOConfig, None, {"prompts": str(prompts)}))
    assert capsys.readouterr().err == ""
