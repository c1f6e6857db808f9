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


# ------------------------------------------------- resume, interrupted writes, unwritable output
def test_rewind_without_a_checkpoint_drops_every_row_and_says_so(tmp_path, capsys, monkeypatch):
    """Guards issue 24.1: a --resume with no checkpoint starts over at step 0, so the rows of the lost
    attempt (the step-0 evaluation too) must all go; from checkpoint N only rows <= N stay."""
    from alignkit import console

    monkeypatch.setattr(console, "_quiet", False)
    run = Run.create("rm", str(tmp_path / "r"), Cfg())
    for step in (0, 1, 2):
        run.log(step, {"loss/total": 1.0})
    run.rewind_metrics(None)
    assert run.read_metrics() == []
    assert "dropped the 3 metrics row(s) of the interrupted attempt" in capsys.readouterr().err
    for step in (0, 1, 2, 3):
        run.log(step, {"loss/total": 1.0})
    run.rewind_metrics(2)
    assert [r["step"] for r in run.read_metrics()] == [0, 1, 2]


def test_reopening_a_run_removes_what_an_interrupted_write_left(tmp_path, capsys, monkeypatch):
    """Guards issue 24.2: a checkpoint write killed midway leaves checkpoints/.step-N.XXXXXXXX (and
    .step-N.old, .NAME.XXXXXXXX.tmp files) forever; opening the run again removes them with an info
    line, and a .step-N.old whose step-N is gone (killed between the renames) gets its name back."""
    from alignkit import console

    monkeypatch.setattr(console, "_quiet", False)
    out = tmp_path / "r"
    run = Run.create("rm", str(out), Cfg())
    run.log(1, {"a": 1})
    run.save_checkpoint(2, lambda d: (d / "state.json").write_text("{}"))
    cps = run.checkpoints_dir
    (cps / ".step-4.qoo1hrw0").mkdir()
    (cps / ".step-4.qoo1hrw0" / "optimizer.pt").write_bytes(b"half")
    (cps / ".step-2.old").mkdir()
    (cps / ".step-3.old").mkdir()
    (cps / ".step-3.old" / "state.json").write_text('{"s": 3}')
    (out / ".report.json.k2j4_x9a.tmp").write_text("{")
    (out / ".hidden-by-the-user").write_text("keep")

    Run.create("rm", str(out), Cfg(), resume=True)
    err = capsys.readouterr().err
    assert sorted(p.name for p in cps.iterdir()) == ["step-2", "step-3"]
    assert json.loads((cps / "step-3" / "state.json").read_text()) == {"s": 3}
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".hidden-by-the-user"]
    assert ".step-4.qoo1hrw0: removed what an interrupted write left behind" in err
    assert ".report.json.k2j4_x9a.tmp: removed" in err
    assert "restored as step-3" in err


def _failing_open(path_part: str, code: int, after: int = 0):
    """An ``open`` that raises ``OSError(code)`` (naming no file, as a full disk does) for files whose path
    holds ``path_part``, after ``after`` successful opens of them for writing."""
    import builtins
    import os

    real = builtins.open
    seen = {"n": 0}

    def fake(file, *args, **kwargs):
        if path_part in str(file) and "r" not in (args[0] if args else kwargs.get("mode", "r")):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(code, os.strerror(code))
        return real(file, *args, **kwargs)

    return fake


def test_unwritable_run_directory_is_a_user_error_naming_it(tmp_path, monkeypatch):
    """Guards issue 24.3a: a read-only or full output is found by Run.create (a probe file) and reported
    as the user's problem naming the directory (not ``internal error: OSError``)."""
    import errno

    from alignkit.errors import OutputError

    out = tmp_path / "ro"
    monkeypatch.setattr("alignkit.runs.open", _failing_open(".alignkit-probe", errno.EROFS), raising=False)
    with pytest.raises(OutputError, match=rf"^{out}: cannot write \(Read-only file system\); .*--output"):
        Run.create("rm", str(out), Cfg())
    monkeypatch.setattr("alignkit.runs.open", _failing_open(".alignkit-probe", errno.EACCES), raising=False)
    with pytest.raises(OutputError, match=rf"^{out}: Permission denied; fix its permissions"):
        Run.create("rm", str(out), Cfg())


def test_write_failures_name_the_file_the_user_asked_for(tmp_path, monkeypatch):
    """Guards issue 24.3b: a full disk names no file; metrics, atomic files and checkpoint folders re-raise
    it naming their target (never the temporary name), whatever the writer (safetensors' message, too)."""
    import errno

    from alignkit.errors import OutputError
    from alignkit.files import atomic_dir, atomic_write_text

    run = Run.create("rm", str(tmp_path / "r"), Cfg())
    monkeypatch.setattr("alignkit.runs.open", _failing_open("metrics.jsonl", errno.ENOSPC), raising=False)
    with pytest.raises(OSError) as info:
        run.log(1, {"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(run.metrics_path)
    advice = "free some space or choose another --output"
    message = f"{run.metrics_path}: cannot write (No space left on device); {advice}"
    assert str(OutputError.from_exception(info.value)) == message

    def full(_tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        run.save_checkpoint(3, full)
    assert info.value.filename == str(run.checkpoints_dir / "step-3")

    def rust_writer(tmp):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(OSError) as info:
        atomic_dir(tmp_path / "model", rust_writer)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "model")

    def readonly_tmp(tmp):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp / "adapter.safetensors"))

    with pytest.raises(OSError) as info:
        atomic_dir(tmp_path / "model", readonly_tmp)
    assert info.value.filename == str(tmp_path / "model" / "adapter.safetensors")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]

    def over_quota(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr("os.fsync", over_quota)
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "report.json", "{}")
    assert info.value.filename == str(tmp_path / "report.json")
    assert "over your disk quota" in str(OutputError.from_exception(info.value))
