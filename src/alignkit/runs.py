"""Run directories: config, metrics, checkpoints and the final report, written safely.

Layout of ``runs/<name>/``::

    config.yaml          the resolved config (recipe < flags)
    metrics.jsonl        one JSON object per logged step, appended and flushed
    checkpoints/step-N/  everything needed to resume (written to a temp dir, then renamed)
    report.json          the final summary (written atomically)

Nothing the user made is lost: every file is written to a temporary name in
the same directory and renamed over the old one (atomic on POSIX), and metrics
are only ever appended. `Run.create` checks that the directory can be written
(before any model is loaded) and removes what an interrupted write left behind;
on ``--resume``, `Run.rewind_metrics` drops the rows logged after the checkpoint
it resumes from (all of them when there is none).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from alignkit import console
from alignkit.config import config_to_dict, diff_configs, save_config
from alignkit.errors import ConfigError, OutputError, UserError
from alignkit.files import atomic_dir, atomic_write_json, atomic_write_text, jsonable, name_os_error

CHECKPOINT_RE = re.compile(r"^step-(\d+)$")
# what an interrupted `files.atomic_dir` / `files.atomic_write_bytes` leaves behind
LEFTOVER_CHECKPOINT_RE = re.compile(r"^\.step-(\d+)\.(?:old|[A-Za-z0-9_]{8})$")
LEFTOVER_FILE_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


RUN_FILE = "run.json"


class Run:
    """One command's run directory."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # ------------------------------------------------------------- creation
    @classmethod
    def create(cls, command: str, output: str | None, config: Any, resume: bool = False) -> Run:
        """Make (or, with ``resume``, reopen) a run directory and save the resolved config.

        A new run refuses a directory that already holds a run, so that nothing
        is overwritten by accident; ``--resume`` requires the saved config to
        match (apart from options that are safe to change).
        """

        if output is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            output = os.path.join("runs", f"{command}-{stamp}")
        run = cls(Path(output))
        saved_path = run.path / "config.yaml"
        if resume:
            if not saved_path.is_file():
                raise UserError(
                    f"{run.path}: nothing to resume (no config.yaml); drop --resume to start a new run"
                )
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            differing = diff_configs(saved, config_to_dict(config))
            if differing:
                details = ", ".join(
                    f"{k}: {saved.get(k)!r} -> {config_to_dict(config).get(k)!r}" for k in differing
                )
                raise ConfigError(
                    f"{saved_path}: --resume with a different config ({details}); "
                    "use the same options or a new --output"
                )
        elif saved_path.exists() and (run.path / "metrics.jsonl").exists():
            raise UserError(
                f"{run.path}: already holds a run; pass --resume to continue it or choose another --output"
            )
        run.check_writable()
        run.clean_leftovers()
        save_config(config, saved_path)
        if not resume or not (run.path / RUN_FILE).exists():
            atomic_write_json(run.path / RUN_FILE, {"command": command})  # what made this run (plots read it)
        return run

    def check_writable(self) -> None:
        """Create the directory, write a probe file and remove it: a read-only file system, missing
        permissions or a full disk show now, before any model is loaded, not steps into training."""
        probe = self.path / f".alignkit-probe-{os.getpid()}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                with open(probe, "wb") as f:
                    f.write(b"alignkit")
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                probe.unlink(missing_ok=True)
        except OSError as e:  # name the directory (or what mkdir could not make), not our probe
            failed = None if e.filename is None else Path(os.fsdecode(e.filename))
            where = self.path if failed is None or failed == probe else failed
            named = OSError(e.errno, e.strerror or str(e), str(where))
            raise OutputError.from_os_error(named) or OutputError(
                f"{where}: cannot write the run directory ({named.strerror}); choose another --output",
                str(where),
            ) from e

    def clean_leftovers(self) -> None:
        """Remove what an interrupted write left behind, saying so: temporary checkpoint folders
        (``checkpoints/.step-N.XXXXXXXX``), ``checkpoints/.step-N.old`` and temporary files
        (``.NAME.XXXXXXXX.tmp``). A ``.step-N.old`` without its ``step-N`` (the write died between the two
        renames) is the complete old checkpoint: it gets its name back."""
        found: list[Path] = []
        if self.checkpoints_dir.is_dir():
            found += [p for p in self.checkpoints_dir.iterdir() if LEFTOVER_CHECKPOINT_RE.match(p.name)]
        if self.path.is_dir():
            found += [p for p in self.path.iterdir() if LEFTOVER_FILE_RE.match(p.name) and p.is_file()]
        for p in sorted(found):
            m = LEFTOVER_CHECKPOINT_RE.match(p.name)
            final = self.checkpoints_dir / f"step-{m.group(1)}" if m else None
            if final is not None and p.name.endswith(".old") and p.is_dir() and not final.exists():
                os.replace(p, final)
                console.info(f"{p}: the old checkpoint an interrupted write left, restored as {final.name}")
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            console.info(f"{p}: removed what an interrupted write left behind")

    # -------------------------------------------------------------- metrics
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one JSON object (``{"step": N, ...}``) to metrics.jsonl and flush it."""
        row = {"step": step, **jsonable(metrics)}
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
        except OSError as e:  # a full disk says nothing of the file it could not write
            named = name_os_error(e, self.metrics_path)
            if named is e:
                raise
            raise named from e

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_path)

    def rewind_metrics(self, checkpoint_step: int | None) -> None:
        """``--resume``: keep the rows up to the checkpoint it resumes from (``checkpoint_step``) and drop
        the rest; with no checkpoint (None) the run starts over at step 0, so every row goes (and says so)."""
        if checkpoint_step is not None:
            self.truncate_metrics(checkpoint_step)
            return
        dropped = len(self.read_metrics())
        if self.metrics_path.exists():
            atomic_write_text(self.metrics_path, "")
        lost = f"; dropped the {dropped} metrics row(s) of the interrupted attempt" if dropped else ""
        console.info(f"{self.path}: --resume found no checkpoint, starting from step 0{lost}")

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop rows logged after the checkpoint so the curve has no duplicates."""
        if not self.metrics_path.exists():
            return
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # ---------------------------------------------------------- checkpoints
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def save_checkpoint(self, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
        """Write ``checkpoints/step-N`` atomically with ``write(tmpdir)``; keep the newest ``keep``."""
        final = atomic_dir(self.checkpoints_dir / f"step-{step}", write)
        for old in self.checkpoints()[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for p in self.checkpoints_dir.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def latest_checkpoint(self) -> Path | None:
        cps = self.checkpoints()
        return cps[-1] if cps else None

    # --------------------------------------------------------------- report
    def write_report(self, report: dict[str, Any]) -> None:
        atomic_write_json(self.path / "report.json", report)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl; a torn last line (killed mid-write) is ignored."""
    rows = []
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def checkpoint_step(path: Path) -> int:
    m = CHECKPOINT_RE.match(Path(path).name)
    if not m:
        raise ValueError(f"not a checkpoint directory: {path}")
    return int(m.group(1))
