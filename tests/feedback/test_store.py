"""The label store: durable appends, tombstones, torn-line recovery, dataset checks, loader round trips."""

from __future__ import annotations

import json
import os

import pytest

from alignkit.data.labels import is_label_file, label_items, read_label_records, read_labels
from alignkit.data.load import load_records
from alignkit.errors import DataError, UserError
from alignkit.feedback.items import load_candidates, make_item_id, shown_order
from alignkit.feedback.store import LabelStore

P = [{"role": "user", "content": "Q?"}]


def _ans(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _label(store: LabelStore, item: str, who: str = "ana", good: str = "good", bad: str = "bad") -> dict:
    return store.append(
        "label",
        item,
        who,
        prompt=P,
        chosen=_ans(good),
        rejected=_ans(bad),
        choice=1,
        shown_order=[0, 1],
        tie=False,
    )


def test_append_fsyncs_every_row_and_reads_back(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        before = len(synced)
        _label(store, "i1")
        assert len(synced) == before + 1  # fsync'd before append returned
        store.append("skip", "i2", "ana", shown_order=[1, 0])
        assert len(synced) == before + 2
    state = read_labels(path)
    assert [r["event"] for _, r in state.rows] == ["label", "skip"]
    assert state.rows[0][1]["dataset"] == "ds1" and state.rows[0][1]["annotator"] == "ana"
    assert state.done_items("ana") == {"i1", "i2"}
    assert state.done_items("ana", include_skips=False) == {"i1"}
    assert state.done_items("bob") == set()


def test_undo_appends_a_tombstone_and_readers_apply_it(tmp_path):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        first = _label(store, "i1")
        second = _label(store, "i2", good="x", bad="y")
        assert store.undo_last("ana")["id"] == second["id"]
        lines_after_undo = path.read_text().count("\n")
        assert store.undo_last("bob") is None  # bob has nothing to undo
    assert lines_after_undo == 3  # nothing rewritten: two labels + one tombstone
    state = read_labels(path)
    assert [r["id"] for _, r in state.effective()] == [first["id"]]
    assert state.done_items("ana") == {"i1"}
    assert [row["item_id"] for _, row, _ in label_items(path)] == ["i1"]
    records = read_label_records(path)
    assert len(records) == 1 and records[0].chosen[0].content == "good"
    assert records[0].meta["annotator"] == "ana" and records[0].source.endswith(":1")


def test_torn_last_line_is_repaired_on_open_and_ignored_by_readers(tmp_path, capsys):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        _label(store, "i1")
        _label(store, "i2")
    good = path.read_bytes()
    torn = b'{"event": "label", "id": "abc", "item_id": "i3", "prompt": [{"ro'
    path.write_bytes(good + torn)

    state = read_labels(path)  # a reader does not change the file
    assert len(state.rows) == 2 and state.torn is not None and state.torn.line == 3
    assert path.read_bytes() == good + torn

    with LabelStore.open(path, "ds1", "pair") as store:
        assert "cut off by a crash" in capsys.readouterr().err
        assert path.read_bytes() == good  # truncated to the last complete line
        _label(store, "i3")
    assert (tmp_path / "labels.jsonl.torn").read_bytes() == torn  # nothing silently lost
    assert [r["item_id"] for _, r in read_labels(path).rows] == ["i1", "i2", "i3"]


def test_complete_last_row_without_newline_is_kept(tmp_path):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        _label(store, "i1")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    with LabelStore.open(path, "ds1", "pair") as store:
        _label(store, "i2")
    assert [r["item_id"] for _, r in read_labels(path).rows] == ["i1", "i2"]


def test_bad_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        _label(store, "i1")
        _label(store, "i2")
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n")
    with pytest.raises(DataError, match=r"labels\.jsonl:2: malformed JSON"):
        LabelStore.open(path, "ds1", "pair")


def test_refuses_another_dataset_unless_append_and_another_mode_always(tmp_path):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        _label(store, "i1")
    with pytest.raises(UserError, match="another dataset.*--append"):
        LabelStore.open(path, "ds2", "pair")
    with LabelStore.open(path, "ds2", "pair", append=True) as store:
        _label(store, "j1")
    assert read_labels(path).datasets == {"ds1", "ds2"}
    with pytest.raises(UserError, match="pair-mode labels"):
        LabelStore.open(path, "ds1", "rank", append=True)


def test_refuses_a_file_that_is_not_a_label_file(tmp_path, candidates):
    before = candidates.read_bytes()
    with pytest.raises(DataError, match=r"candidates\.jsonl:1: is not an alignkit labels file"):
        LabelStore.open(candidates, "ds1", "pair")
    assert candidates.read_bytes() == before
    assert not is_label_file(candidates)


def test_one_writer_per_file(tmp_path):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair"), pytest.raises(UserError, match="open in another"):
        LabelStore.open(path, "ds1", "pair")
    LabelStore.open(path, "ds1", "pair").close()  # free again once closed


def test_label_file_loads_with_the_generic_loader(tmp_path):
    """The loader reads label files through the store: ties, skips and undone labels are not data."""
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        _label(store, "i1")
        store.append("tie", "i2", "ana", tied={"prompt": P, "responses": [_ans("a"), _ans("b")]}, tie=True)
        store.append("skip", "i3", "ana")
        _label(store, "i4", good="c", bad="d")
        _label(store, "i5", good="e", bad="f")
        store.undo_last("ana")  # i5 is taken back: it must not train anything
    assert is_label_file(path)
    result = load_records(path)
    assert result.kind == "preference" and len(result.records) == 2 and result.skipped == []
    assert [r.meta["item_id"] for r in result.records] == ["i1", "i4"]
    assert len(load_records(path, kind="unpaired").records) == 4  # kto


def test_rank_label_file_loads_as_rankings(tmp_path):
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "rank") as store:
        store.append(
            "label", "i1", "ana", prompt=P, responses=[_ans("a"), _ans("b"), _ans("c")], ranks=[1, 0, 2]
        )
    records = load_records(path).records
    assert records[0].kind == "ranking" and records[0].ranks == (1, 0, 2)
    assert len(read_label_records(path)[0].to_pairs()) == 3  # what rm trains on


# ----------------------------------------------------------------------------------------- items
def test_candidates_from_sampler_output(tmp_path, candidates):
    cands = load_candidates(candidates)
    assert cands.format == "sample" and len(cands.items) == 6
    item = cands.items[0]
    assert item.prompt[0].role == "user" and [a[0].content for a in item.answers][0].startswith("GOOD")
    # the same prompt and answers in another order give the same item id
    assert make_item_id(item.prompt, item.answers[::-1]) == item.item_id
    assert load_candidates(candidates).dataset == cands.dataset


def test_candidates_accept_strings_and_drop_degenerate_items(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        {"prompt": "a", "candidates": ["x", "y"]},
        {"prompt": "b", "candidates": ["same", "same"]},
        {"prompt": "a", "candidates": ["y", "x"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cands = load_candidates(path)
    assert len(cands.items) == 1
    assert any("fewer than two distinct" in n for n in cands.notes)
    assert any("repeated" in n for n in cands.notes)


def test_candidates_from_a_preference_file(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "Q?", "chosen": "yes", "rejected": "no"}) + "\n")
    cands = load_candidates(path)
    assert cands.format == "trl-preference" and len(cands.items[0].answers) == 2


def test_candidates_need_answers(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "Q?"}) + "\n")
    with pytest.raises(DataError, match="holds prompt records"):
        load_candidates(path)


def test_bad_candidate_row_names_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps({"prompt": "a", "candidates": ["x", "y"]})
        + "\n"
        + json.dumps({"prompt": "b", "candidates": [{"score": 1}]})
        + "\n"
    )
    with pytest.raises(DataError, match=r"c\.jsonl:2: candidates\[0\]: an object candidate needs a 'text'"):
        load_candidates(path)
    assert len(load_candidates(path, skip_invalid=True).items) == 1


def test_shown_order_is_seeded_per_item(make_candidates):
    items = load_candidates(make_candidates("c.jsonl", 20)).items
    orders = [shown_order(i, seed=0) for i in items]
    assert orders == [shown_order(i, seed=0) for i in items]  # reproducible
    assert {(0, 1), (1, 0)} == set(orders)  # both positions used across items
    assert orders != [shown_order(i, seed=1) for i in items]


def test_many_ties_do_not_hide_the_labels_from_the_loader(tmp_path):
    """Format detection votes over the first rows: tie rows (not data) must not decide the format."""
    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:
        for i in range(12):
            store.append("tie", f"t{i}", "judge", tied={"prompt": P, "responses": [_ans("a"), _ans(f"b{i}")]})
        _label(store, "i1")
        _label(store, "i2", good="x", bad="y")
    result = load_records(path)
    assert result.format == "trl-preference" and len(result.records) == 2 and result.skipped == []


def test_a_full_disk_names_the_label_file(tmp_path, monkeypatch):
    """Guards issue 24.3b: os.write on a full disk names no file ("internal error: OSError: [Errno 28]");
    the store names its label file, so the CLI says which file and what to do (exit 2)."""
    import errno

    from alignkit.errors import OutputError

    path = tmp_path / "labels.jsonl"
    with LabelStore.open(path, "ds1", "pair") as store:

        def full(fd, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError) as info:
            _label(store, "i1")
    assert info.value.filename == str(path)
    assert str(OutputError.from_exception(info.value)).startswith(f"{path}: cannot write (No space left")
