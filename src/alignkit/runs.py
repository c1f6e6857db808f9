"""Run directories: config, metrics, checkpoints and the final report, written safely.

Layout of ``runs/<name>/``::

    config.yaml          the resolved config (recipe < flags)
    metrics.jsonl        one JSON object per logged step, appended and flushed
    checkpoints/step-N/  everything needed to resume (written to a temp dir, then renamed)
    report.json          the final summary (written atomically)

Nothing the user made is lost: every file is written to a temporary name in
the same directory and renamed over the old one (atomic on POSIX), and metrics
are only ever appended.
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

from alignkit.config import config_to_dict, diff_configs, save_config
from alignkit.errors import ConfigError, UserError
from alignkit.files import atomic_dir, atomic_write_json, atomic_write_text, jsonable

CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


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
        run.path.mkdir(parents=True, exist_ok=True)
        save_config(config, saved_path)
        if not resume or not (run.path / RUN_FILE).exists():
            atomic_write_json(run.path / RUN_FILE, {"command": command})  # what made this run (plots read it)
        return run

    # -------------------------------------------------------------- metrics
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one JSON object (``{"step": N, ...}``) to metrics.jsonl and flush it."""
        row = {"step": step, **jsonable(metrics)}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_path)

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
