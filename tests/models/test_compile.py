"""`alignkit rm --compile`: compiled decoder layers train like eager ones; no compiler means eager, with a warning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.models import compile as compile_module
from alignkit.runs import read_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainers"))
from test_rm import tiny_rm_args, write_pairs  # noqa: E402

from factories import needs_compiler  # noqa: E402


def _losses(run: Path) -> list[float]:
    return [r["loss/total"] for r in read_metrics(run / "metrics.jsonl") if "loss/total" in r]


def _train(tmp_path: Path, model_dir: Path, data: Path, name: str, *flags: str, capsys) -> dict:
    args = tiny_rm_args(model_dir, data, tmp_path / name)
    rc = main([*args, "--max-steps", "3", "--eval-split", "0.25", *flags, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return {"summary": json.loads(out.strip().splitlines()[-1]), "err": err}


@needs_compiler
def test_compiled_layers_train_like_eager_ones(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    data = write_pairs(tmp_path / "p.jsonl", n=12)
    calls = {"compiled": 0}
    original = compile_module.compile_layers

    def counting(model):
        undo = original(model)
        layers = compile_module._decoder_layers(model)
        for layer in layers:  # count which path each training / evaluation forward takes
            wrapper = layer.forward

            def forward(*a, _w=wrapper, **k):
                calls["compiled"] += torch.is_grad_enabled()
                return _w(*a, **k)

            layer.forward = forward
        return undo

    monkeypatch.setattr(compile_module, "compile_layers", counting)
    compiled = _train(tmp_path, tiny_model_dir, data, "compiled", "--compile", capsys=capsys)
    eager = _train(tmp_path, tiny_model_dir, data, "eager", "--no-compile", capsys=capsys)
    assert "decoder layers compiled" in compiled["err"] and "decoder layers compiled" not in eager["err"]
    assert calls["compiled"] > 0  # the training steps went through the compiled layers
    assert _losses(tmp_path / "compiled") == pytest.approx(_losses(tmp_path / "eager"), abs=1e-5)
    assert compiled["summary"]["eval_accuracy"] == eager["summary"]["eval_accuracy"]


def test_compiled_only_with_gradients_and_undone(tiny_model, monkeypatch):
    """Training forwards take the compiled path; no_grad forwards (evaluation, scoring) the eager one."""
    compiled_calls = []

    def fake_compile(fn, **kwargs):
        assert kwargs == {"dynamic": True}
        return lambda *a, **k: compiled_calls.append(1) or fn(*a, **k)

    monkeypatch.setattr(torch, "compile", fake_compile)
    layers = compile_module._decoder_layers(tiny_model)
    assert layers and all("forward" not in layer.__dict__ for layer in layers)
    undo = compile_module.compile_layers(tiny_model)
    assert all("forward" in layer.__dict__ for layer in layers)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        expected = tiny_model(ids).logits
    assert not compiled_calls
    torch.testing.assert_close(tiny_model(ids).logits, expected)
    assert len(compiled_calls) == len(layers)
    undo()
    assert all("forward" not in layer.__dict__ for layer in layers)
    assert compile_module.compile_layers(torch.nn.Linear(2, 2)) is None  # no decoder layers: nothing to do


def test_without_a_compiler_rm_trains_eager_and_says_so(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    monkeypatch.setattr(compile_module.shutil, "which", lambda name: None)
    assert "no C++ compiler" in compile_module.compile_unavailable(torch.device("cpu"))
    monkeypatch.setattr(compile_module, "compile_layers", lambda model: pytest.fail("must not compile"))
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    result = _train(tmp_path, tiny_model_dir, data, "run", "--compile", capsys=capsys)
    assert "not compiling (no C++ compiler" in result["err"]
    assert result["summary"]["steps"] == 3


def test_a_compile_failure_is_a_one_line_error_naming_no_compile(
    tmp_path, tiny_model_dir, capsys, monkeypatch
):
    from torch._dynamo.exc import TorchDynamoException

    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    monkeypatch.setattr(compile_module, "compile_unavailable", lambda device: None)

    def failing(model):
        def broken(*args, **kwargs):
            raise TorchDynamoException("inductor broke\nmore")

        for layer in compile_module._decoder_layers(model):
            layer.forward = broken
        return lambda: None

    monkeypatch.setattr(compile_module, "compile_layers", failing)
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    assert main([*tiny_rm_args(tiny_model_dir, data, tmp_path / "r"), "--compile"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        "torch.compile failed (TorchDynamoException: inductor broke)" in err[-1] and "--no-compile" in err[-1]
    )
    assert "Traceback" not in "\n".join(err)
