"""Reward-model evaluation: metrics on hand-computed cases, and `alignkit eval rm` end to end."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.evaluation.reward_model import calibration, evaluate_comparisons, pair_metrics, pearson
from alignkit.reports.reward_model import length_warning
from alignkit.rewards.comparisons import Comparison

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "rm_tiny.yaml"


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_pair_metrics_hand_computed():
    """Gaps (1, -1, 0, 1): right, wrong, tie (half), right -> accuracy 2.5 / 4 = 0.625, margin 1 / 4.

    Length differences (5, -5, 0, 0): the longer-preferred pair is right, the shorter-preferred
    one wrong, the two equal-length pairs give a tie and a right one (0.75).
    """
    better = torch.tensor([2.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    worse = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    better_len = torch.tensor([10.0, 5.0, 7.0, 3.0], dtype=torch.float64)
    worse_len = torch.tensor([5.0, 10.0, 7.0, 3.0], dtype=torch.float64)
    m = pair_metrics(better, worse, better_len, worse_len)
    assert m["accuracy"] == pytest.approx(0.625)
    assert m["pairs"] == 4
    assert m["margin"] == pytest.approx(0.25)
    by_length = m["accuracy_by_length"]
    assert by_length["better_longer"] == {"pairs": 1, "accuracy": 1.0}
    assert by_length["better_shorter"] == {"pairs": 1, "accuracy": 0.0}
    assert by_length["same_length"] == {"pairs": 2, "accuracy": 0.75}
    # quartiles of (-5, 0, 0, 5): edges -5, -1.25, 0, 1.25, 5; every pair in exactly one bucket
    buckets = by_length["quartiles"]
    assert [b["pairs"] for b in buckets] == [1, 0, 2, 1]
    assert [b["accuracy"] for b in buckets] == [0.0, None, 0.75, 1.0]
    scores = [2, 0, 1, 1, 1, 1, 1, 0]
    lengths = [10, 5, 7, 3, 5, 10, 7, 3]
    assert m["length_correlation"] == pytest.approx(statistics.correlation(scores, lengths))


def test_calibration_counts_both_orders():
    """Gaps (1, -1, 0, 1). Both orders give predictions σ(1)=.731 x3, σ(-1)=.269 x3, 0.5 x2.

    Bin 2 holds .269 with outcomes (1, 0, 0): observed 1/3. Bin 5 holds the tie: 0.5 vs 0.5.
    Bin 7 holds .731 with outcomes (1, 1, 0): observed 2/3.
    ECE = 3/8 |1/3 - .269| + 3/8 |2/3 - .731| = 0.75 * (σ(1) - 2/3).
    """
    cal = calibration(torch.tensor([1.0, -1.0, 0.0, 1.0], dtype=torch.float64))
    bins = cal["bins"]
    assert [b["count"] for b in bins] == [0, 0, 3, 0, 0, 2, 0, 3, 0, 0]
    assert bins[2]["predicted"] == pytest.approx(sigmoid(-1)) and bins[2]["observed"] == pytest.approx(1 / 3)
    assert bins[5]["predicted"] == pytest.approx(0.5) and bins[5]["observed"] == pytest.approx(0.5)
    assert bins[7]["observed"] == pytest.approx(2 / 3)
    assert cal["ece"] == pytest.approx(0.75 * (sigmoid(1) - 2 / 3))


def test_perfectly_calibrated_scores_have_small_ece():
    torch.manual_seed(0)
    gaps = torch.randn(20000, dtype=torch.float64) * 2
    # Draw which answer people preferred from the model's own Bradley-Terry probability.
    preferred_first = torch.rand(20000, dtype=torch.float64) < torch.sigmoid(gaps)
    gaps = torch.where(preferred_first, gaps, -gaps)
    assert calibration(gaps)["ece"] < 0.02
    assert calibration(gaps * 4)["ece"] > 0.1  # over-confident


def test_pearson_constant_is_none():
    assert pearson(torch.ones(5), torch.arange(5.0)) is None
    assert pearson(torch.arange(5.0), torch.arange(5.0) * 2 + 1) == pytest.approx(1.0)


class LengthIsReward:
    """A stand-in reward model that scores each sequence by its number of tokens."""

    def score_sequences(self, sequences, batch_size=16):
        return torch.tensor([float(len(s)) for s in sequences])


def test_evaluate_comparisons_with_a_known_scorer_and_length_warning(capsys):
    comparisons = [
        Comparison([[1] * 9, [1] * 4], (0, 1), [6, 1]),  # longer preferred: right
        Comparison([[1] * 3, [1] * 8], (0, 1), [0, 5]),  # shorter preferred: wrong
        Comparison([[1] * 5, [1] * 6, [1] * 7], (2, 1, 0), [2, 3, 4]),  # ranking: all 3 pairs right
    ]
    result = evaluate_comparisons(LengthIsReward(), comparisons)
    assert result["comparisons"] == 3 and result["pairs"] == 5
    assert result["accuracy"] == pytest.approx(4 / 5)
    assert result["margin"] == pytest.approx((5 - 5 + 1 + 2 + 1) / 5)
    assert result["length_correlation"] == pytest.approx(1.0)  # score = 3 prompt tokens + answer tokens
    assert result["accuracy_by_length"]["better_shorter"] == {"pairs": 1, "accuracy": 0.0}
    length_warning(result)
    assert "reward hacking" in capsys.readouterr().err


def test_eval_rm_cli_with_a_zeroed_head(tmp_path, tiny_model_dir, capsys):
    """A head of zeros scores everything 0: accuracy 0.5 (ties), margin 0, perfectly calibrated."""
    from alignkit.models.heads import load_head, save_head

    data = tmp_path / "p.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Q{i}?", "chosen": f"A{i}.", "rejected": "no" * (i + 1)}) + "\n"
            for i in range(6)
        )
    )
    out = tmp_path / "run"
    assert (
        main(["rm", "-c", str(RECIPE), "-m", str(tiny_model_dir), "--data", str(data), "-o", str(out), "-q"])
        == 0
    )
    head = load_head(out / "reward_model", "reward")
    with torch.no_grad():
        head.score.weight.zero_()
    save_head(head, out / "reward_model", "reward")
    capsys.readouterr()
    assert (
        main(["eval", "rm", "--reward-model", str(out), "--data", str(data), "--json", "--dtype", "fp32"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == 0.5 and result["pairs"] == 6 and result["margin"] == 0.0
    assert result["length_correlation"] is None  # constant scores
    assert result["calibration"]["ece"] == pytest.approx(0.0)
    assert result["calibration"]["bins"][5]["count"] == 12
    assert result["max_length"] == 64 and result["dropped_overlength"] == 0
    # tables without --json
    assert main(["eval", "rm", "--reward-model", str(out), "--data", str(data)]) == 0
    assert "accuracy by length" in capsys.readouterr().err


def test_eval_rm_missing_reward_model_exits_2(tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert main(["eval", "rm", "--reward-model", str(tmp_path / "nope"), "--data", str(data)]) == 2
    assert "no such reward model" in capsys.readouterr().err
