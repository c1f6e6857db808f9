"""Read what `alignkit plot` draws: run directories (metrics.jsonl) and best-of-n sample files.

A run directory (`alignkit.runs`) holds ``metrics.jsonl``: one JSON object per logged step, ``{"step": N,
"<namespace>/<name>": value, ...}`` (docs/metrics.md). Training rows and evaluation rows share the file;
evaluation values are named ``eval/...`` (ppo's also carry ``"eval": 1``). A best-of-n file is the
output of ``alignkit sample --best-of-n N`` (docs/sample.md): one JSON line per prompt with its
``candidates``, each with a ``score`` (the rerank key), per-model ``scores``, ``tokens`` and, with a gate,
``passed_gate``.

Every problem raises a `UserError` naming the file (and line) and what to pass instead.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import DataError, UserError

# Keys of a metrics row that are not metrics.
NON_METRIC_KEYS = frozenset({"step", "eval"})

# Config fields that only one trainer's config has (checked against `config.command_configs()` by
# tests/test_plots.py); importing the configs themselves would pull in torch.
CONFIG_MARKERS = {
    "ppo": "kl_coef",
    "rm": "center_rewards",
    "dpo": "label_smoothing",
    "kto": "desirable_weight",
    "grpo": "group_size",  # rloo's config has it too: its runs are told apart by alignkit_model.json or metrics
}
TRAINERS = ("rm", "dpo", "kto", "sft", "ppo", "grpo", "rloo")
# `Run.create` names a run without --output ``runs/<command>-YYYYmmdd-HHMMSS``.
DEFAULT_RUN_NAME = re.compile(r"^(" + "|".join(TRAINERS) + r")-\d{8}-\d{6}$")


@dataclass
class RunData:
    """One run directory's metrics, as series: metric name -> [(step, value)] in logged order."""

    path: Path
    command: str | None  # rm, dpo, kto, sft, ppo, grpo, rloo; None when the directory does not say
    rows: list[dict[str, Any]]  # the metrics.jsonl rows (objects with an int "step")
    label: str = ""  # legend name: "<dir name> (<command>)", set by `label_inputs`

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of every row that logs ``key`` with a finite number, sorted by step (stable)."""
        points = [(r["step"], float(r[key])) for r in self.rows if _is_number(r.get(key))]
        return sorted(points, key=lambda p: p[0])

    def pairs(self, x_key: str, y_key: str) -> list[tuple[int, float, float]]:
        """(step, x, y) from rows that log both keys (the same row: one rollout or one evaluation)."""
        points = [
            (r["step"], float(r[x_key]), float(r[y_key]))
            for r in self.rows
            if _is_number(r.get(x_key)) and _is_number(r.get(y_key))
        ]
        return sorted(points, key=lambda p: p[0])

    def metric_names(self) -> list[str]:
        """Every metric logged with a number at least once, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.rows:
            for k, v in r.items():
                if k not in NON_METRIC_KEYS and _is_number(v):
                    seen.setdefault(k, None)
        return list(seen)


@dataclass
class BestOfNPrompt:
    """One prompt's N candidates (in sampling order)."""

    scores: list[float]  # (N,) the rerank score (the RewardSet's combined score)
    passed: list[bool]  # (N,) passed the safety gate (all True without a gate)
    per_model: dict[str, list[float]]  # reward model name -> (N,) raw score
    tokens: list[float] | None  # (N,) answer length in tokens; None when any candidate lacks it


@dataclass
class BestOfNData:
    """A best-of-n sample file: N candidates per prompt with their scores."""

    path: Path
    prompts: list[BestOfNPrompt]
    n: int  # the smallest candidate count over prompts (curves go up to k = n)
    label: str = ""
    notes: list[str] = field(default_factory=list)


def load_inputs(paths: list[Path]) -> tuple[list[RunData], list[BestOfNData]]:
    """Classify and read each path: a run directory (or its metrics.jsonl), or a best-of-n .jsonl file."""
    runs: list[RunData] = []
    samples: list[BestOfNData] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            runs.append(read_run(path))
        elif path.is_file() and path.name == "metrics.jsonl":
            runs.append(read_run(path.parent))
        elif path.is_file() and path.name.endswith(".jsonl"):
            samples.append(read_best_of_n(path))
        elif path.exists():
            raise UserError(
                f"{path}: not a run directory or a .jsonl file; pass a run folder (with metrics.jsonl) or "
                "a file written by `alignkit sample --best-of-n N`"
            )
        else:
            raise UserError(f"{path}: no such run directory or file")
    label_inputs(runs, samples)
    return runs, samples


def read_run(path: Path) -> RunData:
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(
            f"{path}: no metrics.jsonl (not a run directory); pass the folder a trainer wrote "
            "(alignkit rm/dpo/kto/sft/ppo --output DIR)"
        )
    rows = _read_metrics(metrics)
    return RunData(path=path, command=run_command(path, rows), rows=rows)


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl. A last line without its newline that does not parse is a write in
    progress (a run still training) and is skipped; any other bad line is an error naming FILE:LINE."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        torn = number == len(lines) and not text.endswith("\n")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if torn:
                continue
            raise DataError(
                f"not valid JSON ({e.msg}); each line must be one JSON object", f"{path}:{number}"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", f"{path}:{number}")
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise DataError(f'no integer "step" (got {step!r}); every row needs one', f"{path}:{number}")
        rows.append(row)
    return rows


def run_command(path: Path, rows: list[dict[str, Any]]) -> str | None:
    """Which command made the run: run.json (written by every run since it existed), report.json's
    ``command``, the saved model's ``trainer``, a config field only that trainer has, the default run name
    ``<command>-<stamp>``, or ppo's own metrics (older runs)."""
    made = _read_json(path / "run.json")
    if isinstance(made.get("command"), str):
        return made["command"]
    report = _read_json(path / "report.json")
    if isinstance(report.get("command"), str):
        return report["command"]
    model = _read_json(path / "alignkit_model.json")
    if isinstance(model.get("trainer"), str):
        return model["trainer"]
    config = _read_yaml_keys(path / "config.yaml")
    for command, marker in CONFIG_MARKERS.items():
        if marker in config:
            return command
    m = DEFAULT_RUN_NAME.match(path.resolve().name)
    if m:
        return m.group(1)
    for command in ("ppo", "grpo", "rloo"):
        if any(k.startswith(f"{command}/") for r in rows for k in r):
            return command
    return None


def _read_json(path: Path) -> dict[str, Any]:
    # Side files only name the command; a broken or missing one is not worth stopping the plot for.
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_yaml_keys(path: Path) -> set[str]:
    import yaml

    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    return set(obj) if isinstance(obj, dict) else set()


def read_best_of_n(path: Path) -> BestOfNData:
    """Read a best-of-n sample file; every candidate needs a finite ``score``."""
    prompts: list[BestOfNPrompt] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"not valid JSON ({e.msg}); each line must be one JSON object", where
                ) from None
            prompts.append(_prompt(obj, where))
    if not prompts:
        raise UserError(f"{path}: no lines; pass the --output of `alignkit sample --best-of-n N`")
    sizes = {len(p.scores) for p in prompts}
    data = BestOfNData(path=path, prompts=prompts, n=min(sizes))
    if len(sizes) > 1:
        data.notes.append(
            f"{path}: prompts have {min(sizes)} to {max(sizes)} candidates; curves stop at {data.n}"
        )
    return data


def _prompt(obj: Any, where: str) -> BestOfNPrompt:
    candidates = obj.get("candidates") if isinstance(obj, dict) else None
    if not isinstance(candidates, list) or not candidates:
        raise DataError('no "candidates" list; pass the --output of `alignkit sample --best-of-n N`', where)
    scores, passed, tokens = [], [], []
    per_model: dict[str, list[float]] = {}
    for j, cand in enumerate(candidates):
        score = cand.get("score") if isinstance(cand, dict) else None
        if not _is_number(score) or not math.isfinite(score):
            raise DataError(
                f"candidate {j} has no finite score ({score!r}); was the file written without --best-of-n "
                "(plain sampling is not scored)?",
                where,
            )
        scores.append(float(score))
        passed.append(bool(cand.get("passed_gate", True)))
        tokens.append(cand.get("tokens"))
        named = cand.get("scores")
        for name, value in (named if isinstance(named, dict) else {}).items():
            if _is_number(value):
                per_model.setdefault(name, []).append(float(value))
    # A model's curve needs every candidate's score, or it would be over a different set.
    per_model = {k: v for k, v in per_model.items() if len(v) == len(scores)}
    lengths = [float(t) for t in tokens] if all(_is_number(t) for t in tokens) else None
    return BestOfNPrompt(scores=scores, passed=passed, per_model=per_model, tokens=lengths)


def label_inputs(runs: list[RunData], samples: list[BestOfNData]) -> None:
    """Legend names: the folder (or file) name, with the parent folder when two names collide."""
    names = [r.path.resolve().name for r in runs] + [s.path.name for s in samples]
    paths = [r.path.resolve() for r in runs] + [s.path.resolve() for s in samples]
    short = [n if names.count(n) == 1 else f"{p.parent.name}/{n}" for n, p in zip(names, paths, strict=True)]
    for run, name in zip(runs, short, strict=False):
        run.label = f"{name} ({run.command})" if run.command else name
    for sample, name in zip(samples, short[len(runs) :], strict=True):
        sample.label = f"{name} (best-of-{sample.n})"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
