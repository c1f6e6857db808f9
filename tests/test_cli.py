"""The command line: version, help, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from alignkit import __version__
from alignkit.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"alignkit {__version__}"


@pytest.mark.parametrize(
    "argv", [["--help"], ["data", "inspect", "--help"], ["models", "--help"], ["data", "demo", "--help"]]
)
def test_help_has_example(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
    if argv != ["--help"]:
        assert "Example" in out


def test_usage_error_exits_2(capsys):
    assert main(["data", "inspect"]) == 2
    assert main(["data", "inspect", "x.jsonl", "--no-such-option"]) == 2


def test_missing_file_one_line_error(tmp_path, capsys):
    rc = main(["data", "inspect", str(tmp_path / "nope.jsonl"), "--tokenizer", "words"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error:" in err and "nope.jsonl" in err
    assert "Traceback" not in err


def test_bad_line_names_file_and_line(tmp_path, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": \n')
    rc = main(["data", "inspect", str(f), "--tokenizer", "words", "--strict"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{f}:2" in err


def test_inspect_json_and_demo_data(tmp_path, capsys):
    assert main(["data", "demo", "--output", str(tmp_path)]) == 0
    capsys.readouterr()
    assert (
        main(["data", "inspect", str(tmp_path / "demo_pairs.jsonl"), "--tokenizer", "words", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "preference"
    assert report["records"] >= 20
    assert report["skipped"] == 0
    assert {"format", "kind", "records", "skipped"} <= set(report)


def test_unknown_kind_is_config_error(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n')
    assert main(["data", "inspect", str(f), "--kind", "pairs", "--tokenizer", "words"]) == 2
    assert "--kind must be one of" in capsys.readouterr().err


def test_internal_error_exits_1(monkeypatch, tmp_path, capsys):
    import alignkit.data.inspect as inspect_mod

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(inspect_mod, "inspect_data", boom)
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n')
    assert main(["data", "inspect", str(f), "--tokenizer", "words"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaboom" in err and "Traceback" not in err


def test_models_lists_embedded_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cache"] == str(tmp_path / "cache")
    default = [m for m in out["models"] if m["name"] == "smollm2-135m-instruct"]
    assert default and default[0]["source"] == "embedded" and default[0]["prepared"] is False


HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
# Loads alignkit.cli (every command registered) and prints which heavy libraries came with it. With
# "stub", the alignkit.sampling package is entered without running its __init__ (which imports the
# generator, hence torch), to check every other command module on its own.
PROBE = """
import importlib.util, sys, types
if sys.argv[1] == "stub":
    spec = importlib.util.find_spec("alignkit.sampling")
    pkg = types.ModuleType("alignkit.sampling")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["alignkit.sampling"] = pkg
import alignkit.cli
print(",".join(m for m in sys.argv[2:] if m in sys.modules))
"""


def _heavy_after_import(mode: str) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, *HEAVY], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [m for m in out.split(",") if m]


def test_command_modules_import_no_ml_library():
    """`alignkit --help` stays fast: command modules (dpo, ppo, export, ...) import torch & co. in the command."""
    assert _heavy_after_import("stub") == []


def test_alignkit_cli_imports_no_ml_library():
    assert _heavy_after_import("plain") == []
