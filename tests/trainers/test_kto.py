"""`alignkit kto` on TRL's KTOTrainer: class balance, one-class data, training, report.

Training tests run the session's tiny Llama for a few steps in fp32 with recipes/kto_tiny.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.trainers.kto import class_weights

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "kto_tiny.yaml"


def write_unpaired(path: Path, desirable: int, undesirable: int) -> Path:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "completion": [{"role": "assistant", "content": f"It is {2 * i}."}],
            "label": True,
        }
        for i in range(desirable)
    ] + [
        {
            "prompt": [{"role": "user", "content": f"What is {i} times {i}?"}],
            "completion": [{"role": "assistant", "content": "No idea." + " Really." * (i % 3)}],
            "label": False,
        }
        for i in range(undesirable)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_pairs(path: Path, n: int) -> Path:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "chosen": [{"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
            "rejected": [{"role": "assistant", "content": "No idea."}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def kto_args(tmp_path: Path, model_dir: Path, data: Path, *extra: str, quiet: bool = True) -> list[str]:
    return [
        "kto",
        "--config",
        str(RECIPE),
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(tmp_path / "run"),
        "--json",
        *(["--quiet"] if quiet else []),
        *extra,
    ]


def run_json(args: list[str], capsys) -> tuple[dict, str]:
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


# ----------------------------------------------------------------------------------------- weights
def test_balanced_classes_keep_unit_weights():
    assert class_weights(10, 10) == (1.0, 1.0, None)
    assert class_weights(13, 10)[:2] == (1.0, 1.0)  # ratio 1.3 is inside [1, 4/3]


def test_minority_class_is_upweighted_to_ratio_one():
    """n_D = 10, n_U = 30: lambda_D n_D / lambda_U n_U = 1/3 < 1, so lambda_D = 30 / 10 = 3 gives ratio 1.
    n_D = 40, n_U = 10: ratio 4 > 4/3, so lambda_U = 40 / 10 = 4 gives ratio 1."""
    lam_d, lam_u, note = class_weights(10, 30)
    assert (lam_d, lam_u) == (3.0, 1.0) and "imbalanced" in note
    lam_d, lam_u, note = class_weights(40, 10)
    assert (lam_d, lam_u) == (1.0, 4.0) and "undesirable_weight 4" in note


def test_given_weights_are_kept_with_a_note_when_outside_the_range():
    assert class_weights(10, 30, desirable_weight=3.5) == (3.5, 1.0, None)  # ratio 3.5*10/30 = 1.17
    lam_d, lam_u, note = class_weights(10, 30, desirable_weight=1.0, undesirable_weight=1.0)
    assert (lam_d, lam_u) == (1.0, 1.0) and "outside [1, 4/3]" in note


def test_one_class_explains_why_it_cannot_learn_much():
    lam_d, lam_u, note = class_weights(12, 0)
    assert (lam_d, lam_u) == (1.0, 1.0)
    assert "no undesirable answers" in note and "cannot learn what to prefer" in note


def test_batch_size_one_is_refused(tmp_path, tiny_model_dir, capsys):
    data = write_unpaired(tmp_path / "u.jsonl", 4, 4)
    assert main(kto_args(tmp_path, tiny_model_dir, data, "--batch-size", "1")) == 2
    assert "--batch-size must be >= 2 for KTO" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- training
def test_kto_on_preference_pairs_unpairs_them_and_trains_lora_only(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    import trl

    seen = []
    original = trl.KTOTrainer

    class Spy(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append((self, {n: p.detach().clone() for n, p in self.model.named_parameters()}))

    monkeypatch.setattr(trl, "KTOTrainer", Spy)
    data = write_pairs(tmp_path / "p.jsonl", 8)
    report, _ = run_json(kto_args(tmp_path, tiny_model_dir, data, "--eval-split", "0.25"), capsys)
    assert report["train_desirable"] == report["train_undesirable"] == 6  # each pair -> one of each
    assert report["desirable_weight"] == report["undesirable_weight"] == 1.0
    for key in ("steps", "train_seconds", "eval_loss", "eval_examples"):
        assert report[key] is not None, key
    assert report["eval_examples"] == 4
    trainer, start = seen[-1]
    assert trainer.ref_model is None
    lora = [n for n, _ in trainer.model.named_parameters() if "lora_" in n]
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), start[n])}
    assert set(lora) == moved  # every adapter weight moved, no base weight did
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_imbalanced_unpaired_data_is_reweighted_and_the_log_says_so(tmp_path, tiny_model_dir, capsys):
    data = write_unpaired(tmp_path / "u.jsonl", desirable=3, undesirable=9)
    report, err = run_json(kto_args(tmp_path, tiny_model_dir, data, "--max-steps", "1", quiet=False), capsys)
    assert (report["desirable_weight"], report["undesirable_weight"]) == (3.0, 1.0)
    assert "classes are imbalanced" in " ".join(err.split())
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["balance_note"] == report["balance_note"]


def test_one_class_data_trains_with_a_warning(tmp_path, tiny_model_dir, capsys):
    data = write_unpaired(tmp_path / "u.jsonl", desirable=6, undesirable=0)
    report, err = run_json(kto_args(tmp_path, tiny_model_dir, data, "--max-steps", "1", quiet=False), capsys)
    assert report["steps"] == 1 and report["train_undesirable"] == 0
    assert "warning:" in err and "no undesirable answers to contrast" in " ".join(err.split())


@pytest.mark.parametrize("loss", ["apo_zero_unpaired"])
def test_other_kto_loss_runs(tmp_path, tiny_model_dir, capsys, loss):
    data = write_unpaired(tmp_path / "u.jsonl", 4, 4)
    report, _ = run_json(kto_args(tmp_path, tiny_model_dir, data, "--loss", loss, "--max-steps", "1"), capsys)
    assert report["loss"] == loss and report["final_loss"] is not None
