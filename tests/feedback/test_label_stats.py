"""`alignkit label stats` and `alignkit label aggregate`: agreement (Cohen's kappa, Krippendorff's alpha,
the majority), speed, can't-judge, and a majority-vote preference file that the rm data loader reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data.labels import read_labels
from alignkit.data.load import load_records
from alignkit.feedback.agreement import cohen_kappa, judged_units, krippendorff_alpha, plurality
from alignkit.feedback.items import answer_hash
from alignkit.feedback.stats import compute_stats
from alignkit.feedback.store import LabelStore


def test_cohen_kappa_by_hand():
    # 50 items: both yes 20, a yes / b no 5, a no / b yes 10, both no 15 (p_o = 0.7, p_e = 0.5): 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["<"] * 4, ["<"] * 4) is None  # p_e = 1: undefined
    assert cohen_kappa([], []) is None
    assert plurality(["<", "<", "="]) == "<" and plurality(["<", ">"]) is None and plurality([]) is None


def _conv(text: str, role: str = "assistant") -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def _ordered_answers(item: str) -> tuple[str, str]:
    """Two answers of ``item`` whose hashes sort x before y, so that "x won" is the unit value "<"."""
    x, y = f"X answer of {item}", f"Y answer of {item}"
    while answer_hash(_conv(x)) > answer_hash(_conv(y)):
        x += "."
    return x, y


def _judge(store: LabelStore, item: str, who: str, verdict: str, seconds: float = 1.0) -> None:
    """``verdict``: x or y (that answer won; x shown first), tie, or cant (can't judge)."""
    x, y = _ordered_answers(item)
    common = {"seconds": seconds, "ui": "web", "shown_order": [0, 1]}
    if verdict == "cant":
        store.append("skip", item, who, reason="cant_judge", **common)
    elif verdict == "tie":
        tied = {"prompt": _conv(f"question {item}", "user"), "responses": [_conv(x), _conv(y)]}
        store.append("tie", item, who, tied=tied, choice=None, tie=True, **common)
    else:
        chosen, rejected = (x, y) if verdict == "x" else (y, x)
        store.append(
            "label",
            item,
            who,
            prompt=_conv(f"question {item}", "user"),
            chosen=_conv(chosen),
            rejected=_conv(rejected),
            choice=1 if verdict == "x" else 2,
            tie=False,
            **common,
        )


VERDICTS = {  # item -> annotator -> verdict
    "i1": {"ana": "x", "ben": "x", "cleo": "x"},
    "i2": {"ana": "x", "ben": "y", "cleo": "x"},
    "i3": {"ana": "y", "ben": "y", "cleo": "tie"},
    "i4": {"ana": "x", "ben": "cant", "cleo": "y"},
    "i5": {"ben": "cant"},
    "i6": {"ana": "tie", "ben": "tie", "cleo": "x"},
}


@pytest.fixture
def team_labels(tmp_path) -> Path:
    out = tmp_path / "labels.jsonl"
    seconds = iter([2.0, 4.0, 9.0, 1.0, 3.0, 5.0, 7.0, 6.0, 8.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0])
    with LabelStore.open(out, "ds", "pair") as store:
        for item, verdicts in VERDICTS.items():
            for who, verdict in verdicts.items():
                _judge(store, item, who, verdict, next(seconds))
        _judge(store, "i1", "ben", "y")  # ben changes his mind, then undoes it: the "x" above counts
        store.undo_last("ben")
    return out


def test_agreement_kappa_alpha_and_majority(team_labels):
    units = judged_units(row for _, row in read_labels(team_labels).effective())
    four = {u: v for u, v in units.items() if u[0] != "i6"}  # i1-i4: the units worked out by hand below
    # i1 (<,<,<), i2 (<,>,<), i3 (>,>,=), i4 (<,>): coincidences o<< 4, o<> = o>< 2, o>> 1, o>= = o=> 1;
    # n< 6, n> 4, n= 1, n 11: alpha = 1 - (n - 1) * 6 / (2 * (6*4 + 6*1 + 4*1)) = 1 - 60/68 = 2/17
    assert krippendorff_alpha(four) == pytest.approx(2 / 17)
    stats = compute_stats(read_labels(team_labels))
    pairs = {tuple(p["annotators"]): p for p in stats["agreement"]}
    # ana/ben on i1-i3 and i6: ana < < > =, ben < > > =: p_o 3/4, p_e (2*1 + 1*2 + 1*1)/16 = 5/16: kappa 7/11
    assert pairs[("ana", "ben")]["units"] == 4
    assert pairs[("ana", "ben")]["cohen_kappa"] == pytest.approx((3 / 4 - 5 / 16) / (1 - 5 / 16))
    assert pairs[("ana", "ben")]["agreement"] == pytest.approx(3 / 4)
    # ana/cleo on i1-i4, i6: ana < < > < =, cleo < < = > <: p_o 2/5, p_e (3*3 + 1*1 + 1*1)/25 = 11/25
    assert pairs[("ana", "cleo")]["cohen_kappa"] == pytest.approx((2 / 5 - 11 / 25) / (1 - 11 / 25))
    per = stats["annotators"]
    # leave-one-out majority: ana agrees on i1, not i4 (cleo alone), i2/i3 split, i6 split (tie vs <)
    assert (per["ana"]["majority_agreement"], per["ana"]["majority_units"]) == (pytest.approx(1 / 2), 2)
    assert (per["cleo"]["majority_agreement"], per["cleo"]["majority_units"]) == (pytest.approx(1 / 4), 4)
    assert per["ben"]["cant_judge"] == 2 and stats["cant_judge"] == 2 and stats["undone"] == 1
    assert per["ana"]["seconds_median"] == pytest.approx(7.0)  # ana's rows took 2, 1, 7, 10, 14 s
    assert per["ana"]["first_position_rate"] == pytest.approx(3 / 4)
    assert stats["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(units))


def test_stats_command_as_sub_command_and_option(team_labels, capsys):
    assert main(["label", "stats", str(team_labels), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["annotators"]["ben"]["cant_judge"] == 2 and stats["krippendorff_alpha"] is not None
    assert main(["label", "--stats", str(team_labels), "--json"]) == 0  # the old spelling
    assert json.loads(capsys.readouterr().out) == stats
    assert main(["label", "stats", str(team_labels)]) == 0
    err = capsys.readouterr().err
    assert "Krippendorff's alpha" in err and "Cohen's kappa" in err and "majority" in err
    assert main(["label", "stats", str(team_labels.with_name("missing.jsonl"))]) == 2


def test_aggregate_majority_vote_is_read_by_the_rm_loader(team_labels, tmp_path, capsys):
    from alignkit.trainers.rm import load_comparisons
    from alignkit.trainers.rm_config import RMConfig

    prefs = tmp_path / "prefs.jsonl"
    assert main(["label", "aggregate", str(team_labels), "--output", str(prefs), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # i1 x (3-0), i2 x (2-1), i3 y (2 against 1 tie) written; i4 split (x against y); i6 tie won; i5 no vote
    assert (summary["written"], summary["comparisons"]) == (3, 5)
    assert (summary["dropped_split"], summary["dropped_tie"], summary["items_without_vote"]) == (1, 1, 1)
    assert summary["cant_judge"] == 2
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    won = {r["item_id"]: r["chosen"][0]["content"] for r in rows}
    assert won == {
        "i1": _ordered_answers("i1")[0],
        "i2": _ordered_answers("i2")[0],
        "i3": _ordered_answers("i3")[1],
    }
    assert rows[1]["votes"] == {"chosen": 2, "rejected": 1, "tie": 0}

    train, evals, info = load_comparisons(RMConfig(data=str(prefs), eval_split=0.0))
    assert (info["format"], info["kind"], len(train), evals) == ("trl-preference", "preference", 3, [])
    assert sorted(r.chosen[-1].content for r in train) == sorted(won.values())
    assert all(r.prompt[-1].content.startswith("question i") for r in train)
    assert load_records(str(prefs)).records[0].meta["item_id"] == "i1"

    assert (
        main(["label", "aggregate", str(team_labels), "--output", str(prefs), "--min-votes", "3", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["dropped_few_votes"] == 1  # i4: two votes
    assert main(["label", "aggregate", str(team_labels), "--output", str(team_labels)]) == 2
    assert "label file" in capsys.readouterr().err
    assert main(["label", "aggregate", str(team_labels), "--output", str(prefs), "--min-votes", "9"]) == 2
    assert "nothing written" in capsys.readouterr().err
    assert main(["label", "aggregate", str(team_labels)]) == 2  # --output is required
