"""`alignkit export`: which directories it refuses, and why (the exports themselves are tested with the
trainers that make the runs: tests/trainers/test_rm.py, test_dpo.py, test_ppo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.errors import UserError
from alignkit.export import inspect_run


def export_error(capsys, run: Path, output: Path) -> str:
    """Run `alignkit export` expecting exit status 2; return its one-line error."""
    assert main(["export", str(run), "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    assert not output.exists()  # nothing written
    return " ".join(err.split())


def test_missing_and_unknown_dirs_name_what_was_expected(tmp_path, capsys):
    err = export_error(capsys, tmp_path / "nope", tmp_path / "out")
    assert "no such directory" in err and "expected an alignkit run dir" in err
    (tmp_path / "empty").mkdir()
    err = export_error(capsys, tmp_path / "empty", tmp_path / "out")
    assert "is not an alignkit run" in err and "adapter_config.json" in err and "reward_model/" in err


def test_unfinished_run_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-2").mkdir(parents=True)
    (run / "config.yaml").write_text("model: x\n")
    assert "without a final model" in export_error(capsys, run, tmp_path / "out")


def test_a_standalone_checkpoint_is_refused(tmp_path, tiny_model_dir, capsys):
    err = export_error(capsys, tiny_model_dir, tmp_path / "out")
    assert "already a standalone checkpoint" in err
    classifier = tmp_path / "exported-rm"  # what an earlier `alignkit export` of a reward model wrote
    classifier.mkdir()
    (classifier / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    (classifier / "alignkit_model.json").write_text(
        json.dumps({"base": "x", "adapter": "", "kind": "reward"})
    )
    assert "already a standalone AutoModelForSequenceClassification" in export_error(
        capsys, classifier, tmp_path / "out"
    )


def test_existing_output_is_refused_before_anything_is_loaded(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main(["export", str(tmp_path / "nope"), "--output", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_inspect_run_classifies_layouts(tmp_path):
    rm_run = tmp_path / "rm"
    (rm_run / "reward_model").mkdir(parents=True)
    assert inspect_run(rm_run).kind == "reward" and inspect_run(rm_run).folder == rm_run / "reward_model"
    adapter = tmp_path / "dpo"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "alignkit_model.json").write_text(json.dumps({"base": "b", "trainer": "kto"}))
    assert (inspect_run(adapter).kind, inspect_run(adapter).trainer) == ("adapter", "kto")
    ppo_full = tmp_path / "ppo"
    (ppo_full / "policy").mkdir(parents=True)
    (ppo_full / "config.yaml").write_text("model: b\n")
    (ppo_full / "policy" / "config.json").write_text("{}")
    (ppo_full / "policy" / "model.safetensors").write_bytes(b"")
    found = inspect_run(ppo_full)
    assert (found.kind, found.folder, found.trainer) == ("full", ppo_full / "policy", "ppo")
    with pytest.raises(UserError, match="no such directory"):
        inspect_run(ppo_full / "checkpoints")
