"""File types, kind conversions, error messages with FILE:LINE, skipping, splitting."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from math import comb
from pathlib import Path

import pytest

from alignkit.data import load as load_module
from alignkit.data.load import load_records, split_records
from alignkit.data.records import Message, Record
from alignkit.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"
PAIRS = [
    {"prompt": "q1", "chosen": "good", "rejected": "bad"},
    {"prompt": "q2", "chosen": "yes", "rejected": "no"},
    {"prompt": "q3", "chosen": "up", "rejected": "down"},
]


def where(path: Path) -> str:
    """A regex for a message that starts with ``path`` (then ":LINE: ...")."""
    return "^" + re.escape(str(path))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------- file types
def test_json_list_dict_with_data_and_one_object_per_line(tmp_path):
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(PAIRS))
    under_data = tmp_path / "dict.json"
    under_data.write_text(json.dumps({"version": 1, "data": PAIRS}))
    per_line = tmp_path / "lines.json"
    per_line.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    for path in (as_list, under_data, per_line):
        result = load_records(path)
        assert [r.prompt[0].content for r in result.records] == ["q1", "q2", "q3"], path.name
    assert load_records(as_list).records[2].source == f"{as_list}:#2"
    assert load_records(per_line).records[2].source == f"{per_line}:3"


def test_json_object_with_splits_picks_train_or_the_split(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": PAIRS[:2], "test": PAIRS[2:]}))
    assert len(load_records(path).records) == 2
    assert load_records(path, split="test").records[0].prompt[0].content == "q3"
    with pytest.raises(DataError, match="no split 'dev'"):
        load_records(path, split="dev")


def test_gzipped_jsonl_and_json(tmp_path):
    gz = tmp_path / "hh.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write((FIXTURES / "hh.jsonl").read_bytes())
    result = load_records(gz)
    assert (result.format, len(result.records)) == ("hh-rlhf", 4)
    assert result.records[3].source == f"{gz}:4"
    json_gz = tmp_path / "se.json.gz"
    with gzip.open(json_gz, "wb") as f:
        f.write((FIXTURES / "stack_exchange.json").read_bytes())
    assert load_records(json_gz).format == "stack-exchange-paired"


def test_corrupt_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="cannot read the file"):
        load_records(path)


def test_parquet_file_with_conversational_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Hello"}],
            "label": True,
        },
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Go"}],
            "label": False,
        },
    ]
    path = tmp_path / "kto.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = load_records(path)
    assert (result.format, result.kind) == ("trl-unpaired", "unpaired")
    assert result.records[1].completion == (Message("assistant", "Go"),)
    assert result.records[1].source == f"{path}:#1"


def test_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    single = tmp_path / "single"
    datasets.Dataset.from_list(PAIRS).save_to_disk(str(single))
    assert len(load_records(single).records) == 3
    both = tmp_path / "dict"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(PAIRS[:2]), "test": datasets.Dataset.from_list(PAIRS[2:])}
    ).save_to_disk(str(both))
    assert len(load_records(both).records) == 2  # "train" by default
    test = load_records(both, split="test")
    assert test.records[0].prompt[0].content == "q3" and test.records[0].source == f"{both}:#0"
    with pytest.raises(DataError, match="no split 'dev'; splits: train, test"):
        load_records(both, split="dev")


def test_a_plain_directory_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="is a directory, but not one written by `datasets` save_to_disk"):
        load_records(tmp_path)


def test_missing_path_and_unsupported_suffix(tmp_path):
    with pytest.raises(DataError, match=r"^no such file or directory: .*nothing\.jsonl$"):
        load_records(tmp_path / "nothing.jsonl")
    with pytest.raises(DataError, match=r"^no such file or directory: data/train\.jsonl$"):
        load_records("data/train.jsonl")  # looks like owner/name but is a file name
    txt = tmp_path / "notes.txt"
    txt.write_text("hello\n")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_records(txt)


def test_hub_name_offline_is_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(load_module, "_hub_reachable", lambda timeout_s=3.0: False)
    message = "'someone/some-data' is not a local path, and the Hugging Face Hub is unreachable"
    with pytest.raises(DataError, match=message):
        load_records("someone/some-data")


# ---------------------------------------------------------------- conversions
def test_ranking_to_pairs_gives_every_pair_of_different_rank():
    rankings = load_records(FIXTURES / "ranking.jsonl").records
    pairs = load_records(FIXTURES / "ranking.jsonl", kind="preference")
    # K=3 without ties: C(3,2) = 3; K=4 with one tie: C(4,2) - 1 = 5.
    assert len(pairs.records) == comb(3, 2) + comb(4, 2) - 1 == 8
    assert (pairs.kind, pairs.source_kind) == ("preference", "ranking")
    assert all(p.chosen != p.rejected for p in pairs.records)
    assert {p.meta["group"] for p in pairs.records} == {r.source for r in rankings}


def test_preference_to_unpaired_and_prompt():
    unpaired = load_records(FIXTURES / "trl_preference.jsonl", kind="unpaired")
    assert unpaired.kind == "unpaired" and [r.label for r in unpaired.records] == [True, False, True, False]
    prompts = load_records(FIXTURES / "hh.jsonl", kind="prompt")
    assert prompts.kind == "prompt" and len(prompts.records) == 4 and prompts.records[0].chosen is None


def test_impossible_conversion_names_the_file():
    with pytest.raises(
        DataError, match=r"koala.jsonl: this data holds prompt records, which cannot become preference"
    ):
        load_records(FIXTURES / "koala.jsonl", kind="preference")
    with pytest.raises(ConfigError, match="unknown data kind 'pairs'"):
        load_records(FIXTURES / "koala.jsonl", kind="pairs")


def test_limit_stops_early():
    result = load_records(FIXTURES / "hh.jsonl", limit=2)
    assert [r.source.rsplit(":", 1)[1] for r in result.records] == ["1", "2"]
    assert len(load_records(FIXTURES / "ranking.jsonl", kind="preference", limit=4).records) == 4


# ---------------------------------------------------------------- bad inputs
def test_malformed_json_line_names_its_line():
    path = FIXTURES / "malformed.jsonl"
    # line 2 is `{"prompt": "two"`: a record cut short
    with pytest.raises(
        DataError, match=where(path) + r":2: not complete JSON \(truncated\?\).*--skip-invalid"
    ):
        load_records(path)
    result = load_records(path, skip_invalid=True)
    assert [r.prompt[0].content for r in result.records] == ["one", "four"]  # blank line 3 is ignored
    assert [s for s, _ in result.skipped] == [f"{path}:2"]


def test_missing_field_names_field_and_line():
    path = FIXTURES / "missing_field.jsonl"
    with pytest.raises(DataError, match=where(path) + r":2: field 'rejected' is missing"):
        load_records(path)
    assert len(load_records(path, skip_invalid=True).records) == 2


def test_empty_prompt_is_invalid(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"prompt": "   "}])
    with pytest.raises(DataError, match=where(path) + r":2: prompt is empty"):
        load_records(path)


def test_identical_pairs_error_lists_every_line_and_skip_counts_them():
    path = FIXTURES / "identical.jsonl"
    with pytest.raises(DataError, match=where(path) + r":2: chosen and rejected are identical"):
        load_records(path)
    result = load_records(path, skip_invalid=True)
    assert len(result.records) == 2
    assert result.skipped == [(f"{path}:2", "chosen and rejected are identical (no preference signal)")]


def test_several_invalid_records_are_all_named(tmp_path):
    rows = [
        PAIRS[0],
        {"prompt": "a", "chosen": "x", "rejected": "x"},
        PAIRS[1],
        {"prompt": "b", "chosen": "y"},
    ]
    path = write_jsonl(tmp_path / "two_bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_records(path)
    assert str(info.value).startswith(f"{path}:2: chosen and rejected are identical")
    assert f"and 1 more invalid: {path}:4" in str(info.value)


def test_every_record_invalid_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n[1, 2\n")
    with pytest.raises(
        DataError,
        match=where(path)
        + r": no valid records: all 2 are invalid \(first: "
        + re.escape(f"{path}:1: malformed"),
    ):
        load_records(path, skip_invalid=True)
    identical = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "a", "chosen": "x", "rejected": "x"}])
    with pytest.raises(DataError, match="no valid records"):
        load_records(identical, skip_invalid=True)


def test_empty_files(tmp_path):
    with pytest.raises(DataError, match=r"empty.jsonl: the file is empty"):
        load_records(FIXTURES / "empty.jsonl")
    for name, text in {
        "blank.jsonl": "\n \n",
        "list.json": "[]",
        "header.csv": "prompt,completion\n",
    }.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=rf"{name}: the file is empty"):
            load_records(tmp_path / name)


def test_non_utf8_jsonl_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = b'{"prompt": "fine"}\n'
    path.write_bytes(first + '{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    offset = len(first) + len(b'{"prompt": "caf')
    with pytest.raises(
        DataError, match=where(path) + rf":2: not valid UTF-8 text \(byte offset {offset} in the file\)"
    ):
        load_records(path)
    assert len(load_records(path, skip_invalid=True).records) == 1


def test_non_utf8_json_and_csv(tmp_path):
    json_path = tmp_path / "latin1.json"
    json_path.write_bytes('[\n{"prompt": "a"},\n{"prompt": "caf\u00e9"}\n]'.encode("latin-1"))
    with pytest.raises(DataError, match=where(json_path) + r":3: not valid UTF-8 text \(byte offset \d+\)"):
        load_records(json_path)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes("prompt\nok\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=where(csv_path) + r":3: not valid UTF-8 text"):
        load_records(csv_path)
    assert len(load_records(csv_path, skip_invalid=True).records) == 1


def test_malformed_whole_json_file_names_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"prompt": "a"},\n{"prompt": }\n]')
    with pytest.raises(DataError, match=where(path) + r":3: malformed JSON"):
        load_records(path)


def test_csv_row_with_wrong_cell_count_counts_the_header_as_line_1():
    path = FIXTURES / "bad_cells.csv"
    with pytest.raises(DataError, match=where(path) + r":3: 3 cells, but the header has 2 columns"):
        load_records(path)
    result = load_records(path, skip_invalid=True)
    assert [r.source.rsplit(":", 1)[1] for r in result.records] == ["2", "5"]  # blank line 4 skipped


def test_records_of_another_kind_are_invalid(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
        {"conversations": [{"from": "human", "value": "c"}], "chosen": "d", "rejected": "e"},
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    with pytest.raises(
        DataError, match=where(path) + r":2: this record is preference data, but the ones before are sft"
    ):
        load_records(path)


# ------------------------------------------------------------------- splitting
def _records(n: int, groups: int | None = None) -> list[Record]:
    return [
        Record(
            (Message("user", f"q{i}"),),
            completion=(Message("assistant", "a"),),
            source=f"f:{i % (groups or n)}",
        )
        for i in range(n)
    ]


def test_split_is_deterministic_and_sized():
    records = _records(100)
    train, evals = split_records(records, 0.2, seed=3)
    assert (len(train), len(evals)) == (80, 20)
    assert split_records(records, 0.2, seed=3) == (train, evals)
    assert split_records(records, 0.2, seed=4)[1] != evals
    assert {r.source for r in train}.isdisjoint({r.source for r in evals})
    assert split_records(records, 0.0) == (records, [])


def test_split_keeps_the_pairs_of_one_ranking_together():
    pairs = load_records(FIXTURES / "ranking.jsonl", kind="preference").records
    for seed in range(5):
        train, evals = split_records(pairs, 0.3, seed=seed)
        assert train and evals
        assert {p.meta["group"] for p in train}.isdisjoint({p.meta["group"] for p in evals})
        assert len(train) + len(evals) == len(pairs)


def test_split_needs_two_groups_and_a_valid_fraction():
    with pytest.raises(DataError, match="all 4 records belong to one group"):
        split_records(_records(4, groups=1), 0.5)
    with pytest.raises(ConfigError, match="eval_fraction"):
        split_records(_records(4), 1.0)


def test_fixture_copy_keeps_working_elsewhere(tmp_path):
    # Sources name the path as given, so error messages point where the user looked.
    copy = shutil.copy(FIXTURES / "hh.jsonl", tmp_path / "copy.jsonl")
    assert load_records(copy).records[0].source == f"{copy}:1"


def test_prompt_files_keep_their_answer_column_for_reward_functions(tmp_path):
    """A flat prompt + answer file read as prompts (grpo, ppo): the answer stays a column under its own name
    and as `reference`, so a reward function's `answer=` / `solution=` keyword reaches it; read as SFT data it
    is still the completion."""
    from alignkit.data.load import load_records

    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"prompt": "2 + 3?", "answer": "5", "level": 1}) + "\n")
    record = load_records(path, kind="prompt").records[0]
    assert record.kind == "prompt"
    assert record.meta == {"answer": "5", "level": 1, "reference": "5"}
    other = tmp_path / "other.jsonl"  # a column that is no answer column stays as it is
    other.write_text(json.dumps({"prompt": "2 + 3?", "solution": "5"}) + "\n")
    assert load_records(other, kind="prompt").records[0].meta == {"solution": "5"}
    sft = load_records(path, kind="sft").records[0]
    assert sft.completion is not None and sft.completion[-1].content == "5"
    # other formats: the answer of an SFT record becomes the prompt record's `reference`
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
        )
        + "\n"
    )
    assert load_records(chat, kind="prompt").records[0].meta["reference"] == "hello"
