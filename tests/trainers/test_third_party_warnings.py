"""Library warnings the user cannot act on stay off the console; every other warning still shows (issue 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from alignkit.cli.app import THIRD_PARTY_WARNINGS, quiet_third_party_warnings

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "rm_tiny.yaml"


def test_rm_on_the_tiny_model_prints_no_future_warning(tmp_path, tiny_model_dir):
    """`alignkit rm` printed transformers' "`is_gradient_checkpointing` is deprecated" FutureWarning (via peft)
    with its source line on every run. Run as a real process: pytest's own warning filters do not apply."""
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"What is {i}?", "chosen": f"It is {i}.", "rejected": "No idea."} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "rm",
        "-c",
        str(RECIPE),
        "-m",
        str(tiny_model_dir),
        "--data",
        str(data),
        "-o",
        str(tmp_path / "run"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run(
        [sys.executable, "-m", "alignkit.cli", *args, "--max-steps", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "warnings.warn" not in done.stderr, done.stderr


def test_only_the_listed_messages_are_hidden():
    """The filter matches each listed message, and nothing else: another FutureWarning still shows."""
    assert all(why for _, _, why in THIRD_PARTY_WARNINGS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        for message, category, _ in THIRD_PARTY_WARNINGS:
            warnings.warn(message.replace("\\", "") + " and will be removed in v6.", category, stacklevel=1)
        warnings.warn("`something_else` is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`something_else` is deprecated"]
