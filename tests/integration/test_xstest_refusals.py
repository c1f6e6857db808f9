"""`alignkit eval refusals` on XSTest's human-labelled answers (../shared/data/labelled/xstest/model_completions).

Three models' answers to the 450 XSTest prompts, each labelled by two people as full compliance, full
refusal or partial refusal (Röttger et al. 2023). The rule must agree with the final label on at least 95%
of each file (measured: gpt4 0.991, llama2orig 0.980, mistralguard 0.953; see docs/eval.md for the
remaining disagreements, 9 of mistralguard's 21 being answers its two annotators labelled differently).
Skipped when ../shared is absent.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from alignkit.cli import main

DATA = Path(__file__).parents[2].parent / "shared" / "data"
if not DATA.is_dir():
    pytest.skip(f"no shared data at {DATA}", allow_module_level=True)

pytestmark = pytest.mark.integration

COMPLETIONS = DATA / "labelled" / "xstest" / "model_completions"
# file -> lowest accepted accuracy (measured: gpt4 0.991, llama2orig 0.980, mistralguard 0.953)
MIN_ACCURACY = {
    "xstest_v2_completions_gpt4.csv": 0.95,
    "xstest_v2_completions_llama2orig.csv": 0.95,
    "xstest_v2_completions_mistralguard.csv": 0.95,
}


@pytest.fixture(scope="module")
def result():
    """One CLI run over the three files (stdout captured here: capsys is per test)."""
    argv = ["eval", "refusals", "--json"]
    for name in MIN_ACCURACY:
        argv += ["--data", str(COMPLETIONS / name)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    assert rc == 0
    return json.loads(out.getvalue())


def test_every_answer_is_scored(result):
    assert [Path(f["path"]).name for f in result["files"]] == list(MIN_ACCURACY)
    assert [f["answers"] for f in result["files"]] == [450, 450, 450]
    assert result["answers"] == 1350


@pytest.mark.parametrize("name", list(MIN_ACCURACY))
def test_accuracy_per_file(result, name):
    f = next(f for f in result["files"] if Path(f["path"]).name == name)
    assert f["accuracy"] >= MIN_ACCURACY[name], f["confusion"]
    # the rule beats XSTest's own first-words string match on every file
    assert f["accuracy"] > f["baseline_accuracy"]


def test_total(result):
    assert result["accuracy"] >= 0.95
    assert result["refusal_precision"] >= 0.95
    assert result["refusal_recall"] >= 0.95
