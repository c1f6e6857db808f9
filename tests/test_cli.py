"""The command line: version, help, exit codes, one-line errors."""

from __future__ import annotations

import json
import re

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


def test_eval_help_names_every_sub_command(capsys):
    """Issue 24: `eval --help` said "reward models (rm), and more to come" long after policy and refusals came."""
    from alignkit.cli.eval import eval_app

    names = [c.name for c in eval_app.registered_commands]
    assert sorted(names) == ["instructions", "policy", "refusals", "rm"]
    text = str(eval_app.info.help)
    assert "more to come" not in text and all(f"({name})" in text for name in names)
    assert main(["eval", "--help"]) == 0
    assert "more to come" not in capsys.readouterr().out


# ------------------------------------------------------------------------------- help at 80 columns
HELP_WIDTH = 78  # click wraps help at min(COLUMNS, 80) - 2


def _command_paths() -> list[list[str]]:
    """Every command and group of the app, as argv prefixes ([] is `alignkit` itself)."""
    import typer.main

    from alignkit.cli import app

    paths: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def _help_texts(path: list[str]) -> list[str]:
    """The help of every option and argument of the command at ``path`` (and its sub-commands' summaries)."""
    import typer.main

    from alignkit.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    texts = [p.help for p in command.params if getattr(p, "help", None)]
    for sub in (getattr(command, "commands", None) or {}).values():
        texts.append(sub.help.split("\n\n")[0])
    return texts


def lone_fragments(text: str, width: int = HELP_WIDTH) -> list[str]:
    """Lines of one or two words cut from a sentence: the sentence goes on at the same indent on the next
    line, whose first word would have fitted on this one (so only a hard line break, or a squeezed column,
    put it there). The last line of a paragraph, or one before a word too long to fit, is fine."""
    lines = text.splitlines()
    section = "description"
    found = []
    for line, after in zip(lines, lines[1:], strict=False):
        if re.fullmatch(r"[A-Z][\w ]*:", line):
            section = line  # Options:, Arguments:, Commands: rows start at indent 2
            continue
        if not line.strip() or not after.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent != len(after) - len(after.lstrip()) or (section != "description" and indent <= 2):
            continue
        words = line.split()
        fits = len(line.rstrip()) + 1 + len(after.split()[0]) <= width
        if len(words) <= 2 and fits and not re.search(r"[.:;!?]$", words[-1]):
            found.append(f"{line.strip()!r} (then {after.strip()[:30]!r})")
    return found


def test_lone_fragments_heuristic():
    """The check itself: rich's re-wrap of a hand-wrapped docstring ("reward" / "model(s)") is caught."""
    rewrapped = (
        " Each step samples one response per prompt with the policy, scores it with the\n"
        " reward\n"
        " model(s), subtracts a per-token KL penalty to the reference (the starting\n"
    )
    found = lone_fragments(rewrapped)
    assert len(found) == 1 and found[0].startswith("'reward' (then 'model(s)")
    long_word = (
        "  or an\n  AutoModelForSequenceClassificationCheckpointWithAVeryLongNameIndeedAndMore\n  here.\n"
    )
    assert lone_fragments(long_word) == []


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "alignkit")
def test_help_reads_as_flowing_paragraphs_at_80_columns(path, capsys, monkeypatch):
    """Guards issue 24: help texts wrapped by hand were re-wrapped by rich mid-sentence ("reward" /
    "model(s)"), and rich's option panels left an option's help ~20 columns at 80, in one- and two-word
    lines, cutting long words with an ellipsis. Every `--help` at COLUMNS=80: no lone fragment, no line
    wider than 80 (but an unbreakable path), and every option's help whole (whitespace aside)."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert lone_fragments(out) == [], out
    assert all(len(line) <= 80 or len(line.split()) <= 3 for line in out.splitlines()), out
    assert "…" not in out
    flowing = " ".join(out.split())
    for text in _help_texts(path):
        assert " ".join(text.split()) in flowing, (text, out)


def test_root_help_lists_every_command_in_the_order_of_the_work(capsys):
    from alignkit.cli.help import COMMAND_ORDER

    assert main(["--help"]) == 0
    block = capsys.readouterr().out.split("Commands:")[1]
    listed = [line.split()[0] for line in block.splitlines() if line[:2] == "  " and line[2:3].isalpha()]
    assert listed == list(COMMAND_ORDER)  # every command is placed, none missing or extra
