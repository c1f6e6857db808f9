"""What the loader tells the user: a record cut short, other JSON errors, the advice each command gets,
and a fallback format (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data import load as load_module
from alignkit.data.inspect import inspect_data
from alignkit.data.load import load_records
from alignkit.errors import DataError

ROW = {
    "prompt": "What is 2 plus 2?",
    "chosen": "It is four, a small number",
    "rejected": "no",
    "n": 12,
    "t": True,
}


def pairs_with(path: Path, line3: str, n: int = 5) -> Path:
    """``n`` pairs, one per line, line 3 replaced by ``line3``."""
    lines = [json.dumps({**ROW, "prompt": f"What is {i} plus {i}?"}) for i in range(n)]
    lines[2] = line3
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- a record cut short
def test_a_line_cut_in_half_in_the_middle_of_a_file_is_not_complete_json(tmp_path):
    """Guards the truncated-line message: it was "malformed JSON: Invalid control character at (column N)"."""
    full = json.dumps(ROW)
    path = pairs_with(tmp_path / "cut.jsonl", full[: len(full) // 2])
    with pytest.raises(DataError) as caught:
        load_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: not complete JSON (truncated?)"), message
    assert "control character" not in message and "\n" not in message
    assert load_records(path, skip_invalid=True).skipped[0][1].startswith("not complete JSON (truncated?)")


@pytest.mark.parametrize("newline", ["\n", ""], ids=["mid-file", "last-line"])
def test_every_cut_of_a_record_is_reported_as_not_complete(tmp_path, newline):
    """Wherever a record is cut (in a key, a string, a number, true, between fields), the message says so."""
    full = json.dumps(ROW)
    for cut in range(1, len(full)):
        path = tmp_path / "cut.jsonl"
        path.write_text(json.dumps(ROW) + "\n" + full[:cut] + newline)
        with pytest.raises(DataError, match=r":2: not complete JSON \(truncated\?\)"):
            load_records(path)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"prompt": "a", "chosen": "b",}', "Expecting property name"),
        ('{"prompt": "a\tb", "chosen": "b", "rejected": "c"}', "Invalid control character"),
        ('{"prompt": "a", "chosen": "b", "rejected": "c"}}', "Extra data"),
        ("{'prompt': 'a'}", "Expecting property name"),
        ('{"prompt": "\\q", "chosen": "b", "rejected": "c"}', "Invalid \\escape"),
    ],
)
def test_other_json_errors_keep_the_parsers_words(tmp_path, line, words):
    """An error before the end of a complete line is not called truncated: the parser's message stays."""
    path = pairs_with(tmp_path / "bad.jsonl", line)
    with pytest.raises(DataError) as caught:
        load_records(path)
    assert f"{path}:3: malformed JSON: {words}" in str(caught.value)


def test_a_json_file_cut_short_is_not_complete_json(tmp_path):
    """The same message for a whole .json file that stops in the middle of its list."""
    path = tmp_path / "cut.json"
    text = json.dumps([ROW, ROW], indent=1)
    path.write_text(text[: len(text) - 20])
    with pytest.raises(DataError, match=r"cut\.json:\d+: not complete JSON \(truncated\?\)"):
        load_records(path)


# ---------------------------------------------------------------- advice per command
def test_inspect_strict_advice_names_strict_not_skip_invalid(tmp_path, capsys):
    """`data inspect --strict` on a bad line: the advice is to leave out --strict (inspect has no --skip-invalid)."""
    full = json.dumps(ROW)
    path = pairs_with(tmp_path / "cut.jsonl", full[:40])
    assert main(["data", "inspect", str(path), "--tokenizer", "words", "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: not complete JSON" in err and "--strict" in err and "--skip-invalid" not in err
    with pytest.raises(DataError, match="leave out --strict"):
        inspect_data(path, skip_invalid=False)
    with pytest.raises(DataError, match=r"--skip-invalid"):  # the trainers' loader keeps its own advice
        load_records(path)


# ---------------------------------------------------------------- fallback format
def test_fallback_format_is_used_only_when_detection_cannot_tell(tmp_path, monkeypatch):
    """``fallback_format`` (an eval file under --format) never overrides a format detection can tell."""
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        json.dumps(
            {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
        )
        + "\n"
    )
    assert load_records(hh, fallback_format="trl-preference").format == "hh-rlhf"
    pairs = pairs_with(tmp_path / "pairs.jsonl", json.dumps(ROW))

    def cannot_tell(samples, where):
        raise DataError("cannot tell the data format", where)

    monkeypatch.setattr(load_module, "detect_format", cannot_tell)
    with pytest.raises(DataError, match="cannot tell"):
        load_records(pairs)
    assert load_records(pairs, fallback_format="trl-preference").format == "trl-preference"
    assert load_records(pairs, format="trl-preference").format == "trl-preference"
