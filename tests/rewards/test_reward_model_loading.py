"""Loading --reward-model: a folder that is not a reward model gets one line and exit 2; --format for
`eval rm` and `score` (issue 24)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data import load as load_module
from alignkit.data.formats import detect_format
from alignkit.errors import ModelError
from alignkit.models.registry import write_model_meta
from alignkit.rewards.ensemble import load_reward_set
from alignkit.rewards.model import load_reward_model
from factories import make_policy, make_reward_model


def write_pairs(path: Path, n: int = 4) -> Path:
    rows = [{"prompt": f"What is {i}?", "chosen": f"It is {i}.", "rejected": "No idea."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def not_a_reward_model(kind: str, tmp_path: Path, base: Path) -> Path:
    folder = tmp_path / kind
    if kind == "dpo-run":  # what `alignkit dpo` leaves: a LoRA adapter, tokenizer, meta of kind "policy"
        make_policy(folder, base)
        write_model_meta(folder, base=str(base), adapter="default", kind="policy", trainer="dpo")
        return folder
    if kind == "bare-adapter":
        return make_policy(folder, base)
    folder.mkdir()
    if kind == "empty-config":
        (folder / "config.json").write_text("{}")
    elif kind == "causal-lm":  # a whole causal LM checkpoint with its tokenizer, but no reward head
        for item in base.iterdir():
            shutil.copy(item, folder / item.name)
    return folder


KINDS = ["empty-dir", "empty-config", "causal-lm", "dpo-run", "bare-adapter"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_folder_that_is_no_reward_model_gets_one_line_and_exit_2(kind, tmp_path, tiny_model_dir, capsys):
    """Was a six-line tokenizer error suggesting packages to install for an empty config, a causal LM..."""
    folder = not_a_reward_model(kind, tmp_path, tiny_model_dir)
    data = write_pairs(tmp_path / "pairs.jsonl")
    capsys.readouterr()  # the factory's own output
    assert main(["eval", "rm", "--reward-model", str(folder), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {folder}: not a reward model (") and "alignkit rm" in err
    with pytest.raises(ModelError, match="not a reward model"):
        load_reward_model(folder)


def test_a_reward_set_refuses_a_wrong_folder_before_loading_any_model(tmp_path, tiny_model_dir, monkeypatch):
    """--reward-model good --reward-model wrong: the wrong one is named before the good one is loaded."""
    from alignkit.rewards import model as model_module

    good = make_reward_model(tmp_path / "rm", tiny_model_dir)
    wrong = not_a_reward_model("causal-lm", tmp_path, tiny_model_dir)
    loaded = []
    monkeypatch.setattr(model_module, "load_reward_model", lambda *a, **k: loaded.append(a))
    with pytest.raises(ModelError, match=f"{wrong}: not a reward model"):
        load_reward_set([f"good={good}", f"wrong={wrong}"])
    assert loaded == []


def test_eval_rm_and_score_take_format(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """--format reaches `eval rm` and `score` (data the detector cannot identify, simulated)."""
    rm = make_reward_model(tmp_path / "rm", tiny_model_dir)
    data = write_pairs(tmp_path / "pairs.jsonl")
    monkeypatch.setattr(load_module, "detect_format", lambda samples, where: detect_format([{"x": 1}], where))
    args = ["--reward-model", str(rm), "--data", str(data)]
    assert main(["eval", "rm", *args]) == 2
    assert "--format NAME" in capsys.readouterr().err
    assert main(["eval", "rm", *args, "--format", "trl-preference", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["comparisons"] == 4
    out = tmp_path / "scored.jsonl"
    assert main(["score", *args, "--format", "trl-preference", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4
