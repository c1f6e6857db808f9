"""Fixtures for the feedback tests: small candidate files in the shapes `label` and `judge` read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sample_rows(n: int, k: int = 2) -> list[dict]:
    """`alignkit sample`-style rows: a prompt and k candidates (objects with text), one marked GOOD."""
    rows = []
    for i in range(n):
        cands = [{"text": f"GOOD answer to question {i}.", "scores": [1.0]}]
        cands += [{"text": f"weak answer {j} to question {i}", "scores": [0.0]} for j in range(1, k)]
        rows.append({"prompt": f"Question number {i}?", "candidates": cands})
    return rows


@pytest.fixture
def candidates(tmp_path: Path) -> Path:
    """Six items with two answers each."""
    return write_jsonl(tmp_path / "candidates.jsonl", sample_rows(6))


@pytest.fixture
def rank_candidates(tmp_path: Path) -> Path:
    """Three items with four answers each."""
    return write_jsonl(tmp_path / "rank_candidates.jsonl", sample_rows(3, k=4))


@pytest.fixture
def make_candidates(tmp_path: Path):
    """``make_candidates(name, n, k)`` writes n sampler rows with k candidates and returns the path."""

    def make(name: str, n: int, k: int = 2) -> Path:
        return write_jsonl(tmp_path / name, sample_rows(n, k))

    return make
