"""The label UI without a terminal: the state machine, the screen layout, rank parsing, --stats."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.data.labels import read_label_records, read_labels
from alignkit.feedback.items import load_candidates
from alignkit.feedback.label import (
    LabelSession,
    parse_rank_order,
    ranks_from_groups,
)
from alignkit.feedback.label_view import allot, build_view, clean_text
from alignkit.feedback.stats import compute_stats
from alignkit.feedback.store import LabelStore


def _session(path, out, mode="pair", annotator="ana", **kw):
    cands = load_candidates(path)
    store = LabelStore.open(out, cands.dataset, mode)
    return LabelSession(cands.items, store, annotator, mode, **kw), store


def _text(view) -> str:
    return "\n".join("".join(t for t, _ in line) for line in view.lines)


def test_pair_keys_write_the_shown_answer_as_chosen(candidates, tmp_path):
    out = tmp_path / "labels.jsonl"
    s, store = _session(candidates, out)
    first = s.current
    shown = [first.answers[i] for i in s.shown()]
    s.press("2")
    assert s.done == 1 and s.current is not first
    s.press("t")
    s.press("s")
    s.press("x")  # unknown key: a hint, nothing written
    assert "1/2 choose" in s.message
    store.close()
    rows = [r for _, r in read_labels(out).rows]
    assert [r["event"] for r in rows] == ["label", "tie", "skip"]
    assert rows[0]["chosen"][0]["content"] == shown[1][0].content  # "2" picks the second shown answer
    assert rows[0]["rejected"][0]["content"] == shown[0][0].content
    assert rows[0]["choice"] == 2 and rows[0]["tie"] is False and rows[0]["annotator"] == "ana"
    assert rows[1]["tie"] is True and len(rows[1]["tied"]["responses"]) == 2 and "prompt" not in rows[1]
    assert len(read_label_records(out)) == 1  # only the label trains


def test_undo_puts_the_item_back_and_quit_stops(candidates, tmp_path):
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    s.press("u")
    assert s.message == "nothing to undo"
    first = s.current
    s.press("1")
    s.press("u")
    assert s.current is first and s.done == 0 and s.saved == 0
    s.press("2")
    assert s.done == 1
    s.press("q")
    assert s.finished
    store.close()
    effective = read_labels(tmp_path / "labels.jsonl").effective()
    assert [r["choice"] for _, r in effective] == [2]


def test_a_new_session_resumes_and_can_revisit_skips(candidates, tmp_path):
    out = tmp_path / "labels.jsonl"
    s, store = _session(candidates, out)
    done_ids = [s.current.item_id]
    s.press("1")
    done_ids.append(s.current.item_id)
    s.press("s")
    store.close()
    s2, store2 = _session(candidates, out)
    assert s2.done == 2 and s2.current.item_id not in done_ids
    store2.close()
    s3, store3 = _session(candidates, out, revisit_skipped=True)
    assert s3.done == 1 and done_ids[1] in [i.item_id for i in s3.queue]
    store3.close()
    s4, store4 = _session(candidates, out, annotator="bob")  # another person sees every item
    assert s4.done == 0
    store4.close()


def test_every_item_done_then_undo_still_works(candidates, tmp_path):
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    for _ in range(6):
        s.press("1")
    assert s.current is None and "All 6 items are labelled" in _text(build_view(s, 80, 20))
    s.press("1")
    assert "every item is labelled" in s.message
    s.press("u")
    assert s.current is not None and s.done == 5
    store.close()


@pytest.mark.parametrize(
    ("typed", "k", "groups"),
    [
        ("3 1 2 4", 4, [[2], [0], [1], [3]]),
        ("3124", 4, [[2], [0], [1], [3]]),
        ("2, 1", 2, [[1], [0]]),
        ("3 1=2 4", 4, [[2], [0, 1], [3]]),
    ],
)
def test_parse_rank_order(typed, k, groups):
    assert parse_rank_order(typed, k) == groups


@pytest.mark.parametrize(
    ("typed", "why"),
    [("1 2", "missing 3"), ("1 1 2 3", "repeated 1"), ("1 5 2", "'5'"), ("", "missing 1 2 3")],
)
def test_parse_rank_order_explains_mistakes(typed, why):
    with pytest.raises(ValueError, match=why):
        parse_rank_order(typed, 3)


def test_ranks_from_groups():
    assert ranks_from_groups([[2], [0, 1], [3]], 4) == [1, 1, 0, 2]


def test_rank_mode_typing_enter_saves_a_ranking(rank_candidates, tmp_path):
    out = tmp_path / "labels.jsonl"
    s, store = _session(rank_candidates, out, mode="rank")
    item = s.current
    shown = [item.answers[i][0].content for i in s.shown()]
    for key in "2 1 4":
        s.press(key)
    s.press("enter")  # incomplete: a message, nothing saved
    assert "missing 3" in s.message and s.done == 0
    assert "order> 2 1 4_" in _text(build_view(s, 100, 30))
    s.press(" ")
    s.press("3")
    s.press("enter")
    assert s.done == 1 and s.buffer == ""
    for key in "1=2=3=4":
        s.press(key)
    s.press("enter")  # all equal: a tie
    store.close()
    rows = [r for _, r in read_labels(out).rows]
    assert [r["event"] for r in rows] == ["label", "tie"]
    assert rows[0]["ranks"] == [1, 0, 3, 2] and rows[0]["order"] == "2 1 4 3"
    assert [r[0]["content"] for r in rows[0]["responses"]] == shown
    rec = read_label_records(out)[0]
    best = rec.responses[rec.ranks.index(0)][0].content
    assert best == shown[1]


def test_view_side_by_side_when_wide_stacked_when_narrow(candidates, tmp_path):
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    wide = build_view(s, 120, 24)
    narrow = build_view(s, 60, 24)
    store.close()
    assert len(wide.lines) == 24 and len(narrow.lines) == 24  # exactly one screen
    assert any(
        "[1]" in "".join(t for t, _ in line) and "[2]" in "".join(t for t, _ in line) for line in wide.lines
    )
    assert not any("│" in "".join(t for t, _ in line) for line in narrow.lines)
    assert "done 0/6 · remaining 6" in _text(wide)
    assert all(sum(len(t) for t, _ in line) <= 120 for line in wide.lines)


def test_view_too_small_says_so(candidates, tmp_path):
    s, store = _session(candidates, tmp_path / "labels.jsonl")
    view = build_view(s, 30, 8)
    store.close()
    assert view.too_small and len(view.lines) == 1 and "enlarge the terminal: 30x8" in _text(view)


def test_long_answers_scroll_and_clamp(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "candidates": ["\n".join(f"line {i}" for i in range(50)), "b"]}) + "\n"
    )
    s, store = _session(path, tmp_path / "labels.jsonl")
    top = _text(build_view(s, 60, 20))
    assert "lines 1-8 of 50" in top  # the long answer's window: 8 of the 15 body lines
    s.press("pgdn")  # a page is the window's height less one line
    s.press("down")
    assert "lines 9-16 of 50" in _text(build_view(s, 60, 20))
    for _ in range(20):
        s.press("pgdn")
    bottom = _text(build_view(s, 60, 20))  # clamped: the last window, not past the end
    assert "lines 43-50 of 50" in bottom and "line 49" in bottom
    assert "[2]" in bottom and " b" in bottom.splitlines()  # the other answer never scrolls away
    s.press("up")
    assert "lines 42-49 of 50" in _text(build_view(s, 60, 20))
    store.close()


LONG_PROMPT = "\n".join(f"context line {i} of a very long request" for i in range(200))


@pytest.mark.parametrize(("width", "height"), [(70, 24), (120, 30), (40, 12), (100, 12), (200, 60)])
@pytest.mark.parametrize("scroll", [0, 3, 10_000])
def test_both_answers_are_on_screen_whatever_the_size(tmp_path, width, height, scroll):
    """Issue 24: a long prompt pushed the answers off screen (after a resize only `[1] │ [2]` was left).

    The layout gives the answers their lines first: at every size and scroll position, both answers are
    on screen (the short one from its first line), and the prompt is what gets cut.
    """
    path = tmp_path / "c.jsonl"
    answers = [
        "\n".join(["FIRST-ANSWER-TOP and more words"] + ["tail of one"] * 30),
        "SECOND-ANSWER-TOP here",
    ]
    path.write_text(json.dumps({"prompt": LONG_PROMPT, "candidates": answers}) + "\n")
    s, store = _session(path, tmp_path / "labels.jsonl")
    s.scroll = scroll
    view = build_view(s, width, height)
    store.close()
    text = _text(view)
    assert not view.too_small and len(view.lines) == height
    assert "SECOND-ANSWER-TOP" in text  # short: never scrolls away
    assert ("FIRST-ANSWER-TOP" if not scroll else "tail of one") in text
    assert "[1]" in text and "[2]" in text and " Prompt" in text
    assert "done 0/1 · remaining 1" in text  # the count survives a narrow header
    assert all(sum(len(t) for t, _ in line) <= width for line in view.lines)
    if not scroll:
        assert "lines 1-" in text  # the prompt's window says that it is cut


def test_a_resize_lays_the_screen_out_again(tmp_path):
    """The same session at 120x30, 70x24, back and 40x12: both answers each time (no stale layout)."""
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"prompt": LONG_PROMPT, "candidates": ["ALPHA one", "BRAVO two"]}) + "\n")
    s, store = _session(path, tmp_path / "labels.jsonl")
    for width, height in [(120, 30), (70, 24), (120, 30), (40, 12)]:
        text = _text(build_view(s, width, height))
        assert "ALPHA one" in text and "BRAVO two" in text, (width, height)
    store.close()


def test_rank_mode_too_small_for_every_answer_says_enlarge(rank_candidates, tmp_path):
    """Four stacked answers do not fit in 40x12: one "enlarge the terminal" line instead of a cut list."""
    s, store = _session(rank_candidates, tmp_path / "labels.jsonl", mode="rank")
    small, big = build_view(s, 40, 12), build_view(s, 40, 16)
    store.close()
    assert small.too_small and "enlarge the terminal" in _text(small)
    assert not big.too_small and all(f"[{k}]" in _text(big) for k in range(1, 5))


def test_allot_gives_the_answers_their_lines_first():
    """The order of `allot`: a line each, answers up to 4 lines, the gaps, then the rest in turn."""
    assert allot([50, 1], 200, 4) == ([2, 1], 1, False)  # a line each, then the answers before the prompt
    assert allot([50, 50], 200, 20, gaps=1) == ([7, 7], 5, True)  # 4 each, the gap, then in turn
    assert allot([2, 1], 3, 20, gaps=1) == ([2, 1], 3, True)  # everything fits
    assert allot([3, 3], 1, 2) is None  # not even one line each: too small


def test_model_text_cannot_send_terminal_escapes():
    assert "\x1b" not in clean_text("hi \x1b[2J there\ttab")
    assert "    tab" in clean_text("\ttab")


# -------------------------------------------------------------------------------------------- stats
def _pair_row(store, item, who, chosen, rejected, choice):
    prompt = [{"role": "user", "content": item}]
    store.append(
        "label",
        item,
        who,
        prompt=prompt,
        chosen=[{"role": "assistant", "content": chosen}],
        rejected=[{"role": "assistant", "content": rejected}],
        choice=choice,
        shown_order=[0, 1],
        tie=False,
    )


def test_stats_agreement_and_position_bias(tmp_path):
    out = tmp_path / "labels.jsonl"
    with LabelStore.open(out, "ds", "pair") as store:
        _pair_row(store, "i1", "ana", "a", "b", 1)
        _pair_row(store, "i2", "ana", "c", "d", 1)
        _pair_row(store, "i3", "ana", "e", "f", 2)
        _pair_row(store, "i1", "bob", "a", "b", 2)  # agrees with ana on i1
        _pair_row(store, "i2", "bob", "d", "c", 1)  # disagrees on i2
        store.append(
            "tie",
            "i3",
            "bob",
            tied={
                "prompt": [],
                "responses": [
                    [{"role": "assistant", "content": "e"}],
                    [{"role": "assistant", "content": "f"}],
                ],
            },
        )
        store.append("skip", "i4", "bob")
        _pair_row(store, "i4", "cat", "x", "y", 1)
        store.undo_last("cat")
    stats = compute_stats(read_labels(out))
    assert (stats["labels"], stats["ties"], stats["skips"], stats["undone"]) == (5, 1, 1, 1)
    assert stats["annotators"]["ana"]["first_position_rate"] == pytest.approx(2 / 3)
    assert stats["position_bias"]["first_position_rate"] == pytest.approx(3 / 5)
    [pair] = stats["agreement"]
    assert pair["annotators"] == ["ana", "bob"] and pair["overlap"] == 3
    assert pair["agreement"] == pytest.approx(1 / 3)  # i1 agree, i2 disagree, i3 label vs tie


def test_stats_cli_json_and_table(tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    with LabelStore.open(out, "ds", "pair") as store:
        _pair_row(store, "i1", "ana", "a", "b", 1)
    out.write_bytes(out.read_bytes() + b'{"event": "lab')  # a torn tail: reported, not fatal
    assert main(["label", "--stats", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert stats["labels"] == 1 and stats["torn_last_line"] is True
    assert "cut-off last line" in captured.err
    assert main(["label", "--stats", str(out)]) == 0
    assert "first shown chosen" in capsys.readouterr().err


def test_label_cli_needs_a_terminal_and_its_options(candidates, tmp_path, capsys):
    assert main(["label", "--data", str(candidates), "--output", str(tmp_path / "l.jsonl")]) == 2
    assert "interactive" in capsys.readouterr().err
    assert main(["label", "--data", str(candidates)]) == 2
    assert main(["label", "--data", str(candidates), "--output", "x.jsonl", "--mode", "best"]) == 2


def test_key_reader_decodes_escape_sequences():
    import os

    from alignkit.feedback.label import KeyReader

    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"1\x1b[A\x1bOB\x1b[6~\r\x7f\xc3\xa9")
        keys = KeyReader(read_fd)  # no terminal modes needed to decode
        got = [keys.read(timeout=1) for _ in range(7)]
        assert got == ["1", "up", "down", "pgdn", "enter", "backspace", "é"]
        assert keys.read(timeout=0) is None
        os.close(write_fd)
        write_fd = -1
        assert keys.read(timeout=1) == "eof"
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
