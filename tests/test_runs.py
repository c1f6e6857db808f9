"""Run directories: atomic writes, metrics, checkpoints, resume checks."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from alignkit.config import TrainConfig
from alignkit.errors import ConfigError, UserError
from alignkit.files import atomic_write_json
from alignkit.runs import Run, read_metrics


@dataclass
class Cfg(TrainConfig):
    pass


def test_create_saves_config_and_refuses_overwrite(tmp_path):
    out = tmp_path / "run"
    run = Run.create("rm", str(out), Cfg(lr=0.5))
    assert "lr: 0.5" in (out / "config.yaml").read_text()
    run.log(1, {"loss/total": 1.0})
    with pytest.raises(UserError, match="already holds a run"):
        Run.create("rm", str(out), Cfg(lr=0.5))


def test_resume_requires_same_config(tmp_path):
    out = tmp_path / "run"
    Run.create("rm", str(out), Cfg(lr=0.5)).log(1, {"a": 1})
    Run.create("rm", str(out), Cfg(lr=0.5, max_steps=99), resume=True)  # max_steps may change
    with pytest.raises(ConfigError, match=r"lr: 0\.5 -> 0\.1"):
        Run.create("rm", str(out), Cfg(lr=0.1), resume=True)
    with pytest.raises(UserError, match="nothing to resume"):
        Run.create("rm", str(tmp_path / "other"), Cfg(), resume=True)


def test_metrics_append_and_torn_line(tmp_path):
    run = Run.create("rm", str(tmp_path / "r"), Cfg())
    run.log(1, {"loss/total": 0.5, "nan": float("nan")})
    run.log(2, {"loss/total": 0.4})
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 3, "loss')  # killed mid-write
    rows = read_metrics(run.metrics_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["nan"] is None
    run.truncate_metrics(after_step=1)
    assert [r["step"] for r in run.read_metrics()] == [1]


def test_checkpoints_atomic_and_pruned(tmp_path):
    run = Run.create("rm", str(tmp_path / "r"), Cfg())
    for step in (1, 2, 3):
        run.save_checkpoint(
            step, lambda d, s=step: (d / "state.json").write_text(json.dumps({"s": s})), keep=2
        )
    names = [p.name for p in run.checkpoints()]
    assert names == ["step-2", "step-3"]
    assert json.loads((run.latest_checkpoint() / "state.json").read_text()) == {"s": 3}

    def broken(d):
        (d / "partial").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        run.save_checkpoint(4, broken)
    # the failed write left no step-4 and no temp dirs; step-3 intact
    assert [p.name for p in run.checkpoints()] == ["step-2", "step-3"]
    assert not [p for p in run.checkpoints_dir.iterdir() if p.name.startswith(".")]


def test_atomic_write_json_replaces_whole_file(tmp_path):
    p = tmp_path / "report.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"b": float("inf")})
    assert json.loads(p.read_text()) == {"b": None}
    assert [x.name for x in tmp_path.iterdir()] == ["report.json"]
