"""`inspect_data`: counts, lengths and data-quality notes with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.data import inspect as inspect_module
from alignkit.data.inspect import inspect_data

FIXTURES = Path(__file__).parent / "fixtures"


def test_hh_report_counts_lengths_and_notes():
    path = FIXTURES / "hh.jsonl"
    report = inspect_data(path)
    assert (report["format"], report["kind"], report["records"], report["pairs"]) == (
        "hh-rlhf",
        "preference",
        4,
        4,
    )
    assert report["skipped"] == 0 and report["length_unit"] == "words"
    assert report["findings"]["empty_final_answer"] == [f"{path}:2"]
    assert report["findings"]["multi_turn_answer"] == [f"{path}:3", f"{path}:4"]
    assert report["notes"][0].startswith("1 pair with an empty final answer") and report["notes"][0].endswith(
        "line 2"
    )
    assert report["notes"][1].startswith("2 pairs whose dialogues part") and report["notes"][1].endswith(
        "lines 3, 4"
    )
    # Prompts: "How do I bake bread?" (5 words), "Tell me how to pick a lock." (7),
    # "Hi" (1), "What is 2+2?" (3): sorted 1, 3, 5, 7; p95 = 5 + 0.85 * (7 - 5).
    assert report["lengths"]["prompt_tokens"] == {"min": 1, "mean": 4.0, "p50": 4.0, "p95": 6.7, "max": 7}
    assert report["lengths"]["response_tokens"]["min"] == 0  # the empty final answer
    assert report["sample"]["prompt"] == [{"role": "user", "content": "How do I bake bread?"}]
    json.dumps(report)  # the CLI prints it as JSON


def test_identical_pairs_are_reported_from_the_skipped_records():
    path = FIXTURES / "identical.jsonl"
    report = inspect_data(path)
    assert report["skipped"] == 1 and report["records"] == 2
    assert report["skipped_reasons"] == [
        {"source": f"{path}:2", "reason": "chosen and rejected are identical (no preference signal)"}
    ]
    assert report["notes"] == [
        "1 pair with identical chosen and rejected answers (no preference signal: skipped): line 2"
    ]


def test_rankings_count_pairs_and_note_ties():
    report = inspect_data(FIXTURES / "ranking.jsonl")
    assert (report["rankings"], report["pairs"]) == (2, 8)
    assert report["findings"]["ranking_ties"] == [f"{FIXTURES / 'ranking.jsonl'}:2"]
    assert any(n.startswith("1 ranking with tied answers") for n in report["notes"])


def test_kind_conversion_counts_converted_records_but_notes_the_source():
    report = inspect_data(FIXTURES / "ranking.jsonl", kind="preference")
    assert (report["kind"], report["source_kind"], report["records"], report["pairs"]) == (
        "preference",
        "ranking",
        8,
        8,
    )
    assert report["findings"]["ranking_ties"]  # found on the rankings, before conversion
    unpaired = inspect_data(FIXTURES / "trl_unpaired.jsonl")
    assert unpaired["labels"] == {"desirable": 2, "undesirable": 1}


def test_other_skipped_records_get_a_note_each():
    report = inspect_data(FIXTURES / "malformed.jsonl")
    assert report["skipped"] == 1
    # line 2 is `{"prompt": "two"`: a record cut short
    assert report["notes"][0].startswith("1 invalid record skipped, not complete JSON (truncated?)")
    assert report["notes"][0].endswith("line 2")


def test_tokenizer_lengths_are_counted_in_batches(monkeypatch):
    calls = []

    def char_tokenizer(texts, add_special_tokens=True):
        calls.append(len(texts))
        assert add_special_tokens is False
        return {"input_ids": [list(t) for t in texts]}

    monkeypatch.setattr(inspect_module, "TOKENIZE_BATCH", 3)
    report = inspect_data(FIXTURES / "hh.jsonl", tokenizer=char_tokenizer)
    assert report["length_unit"] == "tokens"
    assert report["lengths"]["prompt_tokens"]["max"] == len("Tell me how to pick a lock.")
    assert calls == [3, 1, 3, 3, 2]  # 4 prompts, then 8 answers, three at a time


def test_sample_strings_are_cut(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"prompt": "x" * 1000}) + "\n")
    content = inspect_data(path)["sample"]["prompt"][0]["content"]
    assert len(content) == inspect_module.SAMPLE_CHARS + 1 and content.endswith("…")
