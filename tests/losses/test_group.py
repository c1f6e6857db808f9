"""Group advantages (GRPO, RLOO, REINFORCE++) against hand-computed numbers and slow, obvious loops."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from alignkit.losses.group import (
    batch_normalized_advantages,
    group_normalized_advantages,
    group_stats,
    leave_one_out_advantages,
    nanstd,
)

NAN = float("nan")
EPS = 1e-4


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def random_scores(n_groups: int, group_size: int, seed: int, nan_frac: float = 0.25) -> torch.Tensor:
    """Random float64 scores with some NaNs, one all-NaN group and one group with a single scorable answer."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_groups * group_size, generator=g, dtype=torch.float64)
    x[torch.rand(x.shape, generator=g) < nan_frac] = NAN
    x[:group_size] = NAN
    x[group_size : 2 * group_size] = NAN
    x[group_size] = 0.5
    return x


# --------------------------------------------------------------------------- slow references


def loop_group(scores: list[float], group_size: int, scale: str) -> list[float]:
    """GRPO by the definition: per group, Python's statistics over the non-NaN answers."""
    ok = [s for s in scores if not math.isnan(s)]
    batch_std = statistics.stdev(ok) if len(ok) > 1 else NAN
    out = []
    for start in range(0, len(scores), group_size):
        group = scores[start : start + group_size]
        valid = [s for s in group if not math.isnan(s)]
        for s in group:
            if math.isnan(s) or len(valid) < (2 if scale == "group" else 1):
                out.append(0.0)
                continue
            a = s - statistics.fmean(valid)
            std = {
                "group": statistics.stdev(valid) if len(valid) > 1 else 0.0,
                "batch": batch_std,
                "none": None,
            }
            if scale != "none":
                a = 0.0 if math.isnan(std[scale]) else a / (std[scale] + EPS)
            out.append(a)
    return out


def loop_leave_one_out(scores: list[float], group_size: int) -> list[float]:
    """RLOO by the definition: r_i minus the mean of the *other* scorable answers of its group."""
    out = []
    for start in range(0, len(scores), group_size):
        group = scores[start : start + group_size]
        for i, s in enumerate(group):
            others = [o for j, o in enumerate(group) if j != i and not math.isnan(o)]
            out.append(0.0 if math.isnan(s) or not others else s - statistics.fmean(others))
    return out


# --------------------------------------------------------------------------- GRPO


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ("group", [-1 / (1 + EPS), 0.0, 1 / (1 + EPS)] + [x / (math.sqrt(12) + EPS) for x in (-2, -2, 4)]),
        ("batch", [x / (math.sqrt(5.2) + EPS) for x in (-1, 0, 1, -2, -2, 4)]),
        ("none", [-1.0, 0.0, 1.0, -2.0, -2.0, 4.0]),
    ],
)
def test_group_normalized_by_hand(scale, expected):
    """G = 3, scores (1, 2, 3 | 0, 0, 6); both groups have mean 2.

    Group 1: deviations (-1, 0, 1), unbiased var (1 + 0 + 1) / 2 = 1, std 1.
    Group 2: deviations (-2, -2, 4), var (4 + 4 + 16) / 2 = 12, std sqrt(12).
    Batch: mean 2, deviations (-1, 0, 1, -2, -2, 4), var 26 / 5 = 5.2: "batch" keeps the group baseline and
    divides by sqrt(5.2) + eps; "none" (Dr. GRPO) does not divide.
    """
    adv = group_normalized_advantages(t(1, 2, 3, 0, 0, 6), 3, scale=scale)
    assert adv.tolist() == pytest.approx(expected, rel=1e-12)


def test_group_normalized_nan_answers_leave_the_statistics_and_get_zero():
    """(1, NaN, 3, 5): scorable {1, 3, 5}, mean 3, std sqrt((4 + 0 + 4) / 2) = 2, A = (-2, 0, 0, 2) / 2.0001.

    (NaN, 4, NaN, NaN): one scorable answer, std undefined: all 0.  (NaN x 4): all 0.
    """
    scores = t(1, NAN, 3, 5, NAN, 4, NAN, NAN, NAN, NAN, NAN, NAN)
    for scale in ("group", "batch", "none"):
        adv = group_normalized_advantages(scores, 4, scale=scale)
        assert torch.isfinite(adv).all()
        assert adv[4:].tolist() == [0.0] * 8
        assert adv[1].item() == 0.0
    assert group_normalized_advantages(scores, 4)[:4].tolist() == pytest.approx(
        [-2 / 2.0001, 0, 0, 2 / 2.0001]
    )


def test_group_normalized_degenerate_groups_give_zero():
    """G = 1 (one answer per prompt: no baseline) and a group of equal rewards carry no signal: A = 0."""
    assert group_normalized_advantages(t(3, -1, 7), 1).tolist() == [0.0, 0.0, 0.0]
    assert group_normalized_advantages(t(0.1, 0.1, 0.1, 0.1), 4).abs().max().item() < 1e-9


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_normalized_matches_a_loop_on_random_scores(scale):
    """Against the definition with Python's statistics, on 8 groups of 5 with NaNs and degenerate groups."""
    scores = random_scores(8, 5, seed=3)
    expected = loop_group(scores.tolist(), 5, scale)
    assert group_normalized_advantages(scores, 5, scale=scale).tolist() == pytest.approx(expected, rel=1e-9)


def test_group_normalized_order_and_invariances():
    """Within a group a larger reward gets a larger advantage; the advantages sum to 0 per group; adding a
    constant to one group's rewards changes nothing (the baseline moves with it); scaling every reward by
    10 leaves "group" unchanged (up to eps) and multiplies "none" by 10."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(24, generator=g, dtype=torch.float64)
    adv = group_normalized_advantages(scores, 6)
    for k in range(4):
        s, a = scores[6 * k : 6 * k + 6], adv[6 * k : 6 * k + 6]
        assert torch.equal(torch.argsort(s), torch.argsort(a))
        assert a.sum().item() == pytest.approx(0.0, abs=1e-12)
    shifted = scores.clone()
    shifted[6:12] += 100.0
    assert torch.allclose(group_normalized_advantages(shifted, 6), adv, atol=1e-10)
    assert torch.allclose(group_normalized_advantages(10 * scores, 6), adv, rtol=1e-3)
    none = group_normalized_advantages(scores, 6, scale="none")
    assert torch.allclose(group_normalized_advantages(10 * scores, 6, scale="none"), 10 * none)


def test_group_normalized_rejects_bad_input():
    with pytest.raises(ValueError, match="groups of 4"):
        group_normalized_advantages(t(1, 2, 3), 4)
    with pytest.raises(ValueError, match="unknown scale"):
        group_normalized_advantages(t(1, 2), 2, scale="whiten")
    with pytest.raises(ValueError, match="1-D"):
        group_normalized_advantages(torch.zeros(2, 2), 2)


def test_nanstd_agrees_with_trl():
    """Our nanstd against TRL 1.16's own ``trl.trainer.utils.nanstd`` (called, not copied), float32 with NaNs,
    per row and over everything, including rows with 0 and 1 non-NaN values (NaN in both)."""
    trl_utils = pytest.importorskip("trl.trainer.utils")
    x = random_scores(6, 4, seed=7).float().view(6, 4)
    ours, theirs = nanstd(x, dim=1), trl_utils.nanstd(x, dim=1)
    assert ours.isnan()[:2].all()
    assert torch.allclose(ours, theirs, rtol=1e-6, equal_nan=True)
    assert nanstd(x).item() == pytest.approx(trl_utils.nanstd(x).item(), rel=1e-6)


# --------------------------------------------------------------------------- group statistics


def test_group_stats_by_hand():
    """Groups of 3: (1, 2, 3) mean 2 std 1; (5, 5, NaN) mean 5 std 0, all equal; (NaN, 7, NaN) one scorable:
    std NaN, all equal (no signal); (NaN x 3): mean NaN, count 0."""
    stats = group_stats(t(1, 2, 3, 5, 5, NAN, NAN, 7, NAN, NAN, NAN, NAN), 3)
    assert stats.mean[:3].tolist() == [2.0, 5.0, 7.0] and math.isnan(stats.mean[3].item())
    assert stats.std[:2].tolist() == pytest.approx([1.0, 0.0]) and stats.std[2:].isnan().all()
    assert stats.all_equal.tolist() == [False, True, True, True]
    assert stats.count.tolist() == [3, 2, 1, 0]


def test_group_stats_all_equal_means_zero_advantages():
    """Every group flagged ``all_equal`` gets all-zero GRPO advantages; the others do not."""
    scores = random_scores(10, 4, seed=11)
    scores[8:12] = 2.5
    stats = group_stats(scores, 4)
    adv = group_normalized_advantages(scores, 4).view(10, 4)
    assert torch.equal(stats.all_equal, (adv.abs() < 1e-9).all(dim=1))


# --------------------------------------------------------------------------- RLOO


def test_leave_one_out_by_hand():
    """(1, 2, 3, 6): the others' means are 11/3, 10/3, 9/3, 6/3, so A = (-8/3, -4/3, 0, 4) = 4/3 (r - 3).

    (1, NaN, 3, 5): the others are the scorable ones: 1 - (3+5)/2 = -3, 0 (NaN), 3 - 3 = 0, 5 - 2 = 3.
    (NaN, 4, NaN, NaN): no other answer: 0.
    """
    adv = leave_one_out_advantages(t(1, 2, 3, 6, 1, NAN, 3, 5, NAN, 4, NAN, NAN), 4)
    assert adv.tolist() == pytest.approx([-8 / 3, -4 / 3, 0, 4, -3, 0, 0, 3, 0, 0, 0, 0], abs=1e-12)


def test_leave_one_out_matches_a_loop_and_the_scaled_group_mean():
    """Against the definition on random scores with NaNs; and A = n_g / (n_g - 1) (r - mean_g) where n_g >= 2."""
    scores = random_scores(8, 5, seed=5)
    adv = leave_one_out_advantages(scores, 5)
    assert adv.tolist() == pytest.approx(loop_leave_one_out(scores.tolist(), 5), abs=1e-12)
    stats = group_stats(scores, 5)
    n = stats.count.repeat_interleave(5).double()
    scaled = n / (n - 1) * (scores - stats.mean.repeat_interleave(5))
    keep = ~scores.isnan() & (n >= 2)
    assert torch.allclose(adv[keep], scaled[keep], atol=1e-12)
    assert (adv[~keep] == 0).all()


def test_leave_one_out_order_and_degenerate_cases():
    """A larger reward gets a larger advantage within a group; G = 1 gives 0; equal rewards give 0."""
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(12, generator=g, dtype=torch.float64)
    adv = leave_one_out_advantages(scores, 4)
    for k in range(3):
        assert torch.equal(torch.argsort(scores[4 * k : 4 * k + 4]), torch.argsort(adv[4 * k : 4 * k + 4]))
    assert leave_one_out_advantages(t(1, NAN, 3), 1).tolist() == [0.0, 0.0, 0.0]
    assert leave_one_out_advantages(t(2, 2, 2), 3).tolist() == [0.0, 0.0, 0.0]


def test_leave_one_out_normalize_whitens_the_defined_advantages_only():
    """``normalize`` (TRL's ``normalize_advantages``): (A - mean) / (std + 1e-4) over the defined advantages
    only; unscorable answers and single-answer groups stay 0 and out of the statistics."""
    scores = random_scores(8, 5, seed=9)
    raw = loop_leave_one_out(scores.tolist(), 5)
    count = group_stats(scores, 5).count.repeat_interleave(5)
    defined = [i for i in range(len(raw)) if not math.isnan(scores[i].item()) and count[i] >= 2]
    assert len(defined) < len(raw) - 5  # some rows besides the all-NaN group stay out
    values = [raw[i] for i in defined]
    mu, sd = statistics.fmean(values), statistics.stdev(values)
    expected = [0.0] * len(raw)
    for i in defined:
        expected[i] = (raw[i] - mu) / (sd + EPS)
    assert leave_one_out_advantages(scores, 5, normalize=True).tolist() == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- REINFORCE++


def test_batch_normalized_by_hand():
    """(1, 2, 3, 6): mean 3, deviations (-2, -1, 0, 3), var (4 + 1 + 0 + 9) / 3 = 14/3, std 2.1602."""
    sd = math.sqrt(14 / 3)
    adv = batch_normalized_advantages(t(1, 2, 3, 6))
    assert adv.tolist() == pytest.approx([x / (sd + EPS) for x in (-2, -1, 0, 3)], rel=1e-12)


def test_batch_normalized_nan_and_degenerate():
    """NaN answers get 0 and leave the statistics: (1, NaN, 3) is (1, 3): mean 2, std sqrt(2).
    One or no scorable answer: all 0. Order is kept across the whole batch."""
    adv = batch_normalized_advantages(t(1, NAN, 3))
    assert adv.tolist() == pytest.approx([-1 / (math.sqrt(2) + EPS), 0.0, 1 / (math.sqrt(2) + EPS)])
    assert batch_normalized_advantages(t(NAN, 4, NAN)).tolist() == [0.0, 0.0, 0.0]
    assert batch_normalized_advantages(t(NAN, NAN)).tolist() == [0.0, 0.0]
    scores = torch.randn(16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.equal(torch.argsort(scores), torch.argsort(batch_normalized_advantages(scores)))


def test_advantages_are_targets_without_grad():
    """The estimators run under no_grad: a score that requires grad gives an advantage that does not."""
    scores = t(1, 2, 3, 4).requires_grad_()
    for adv in (
        group_normalized_advantages(scores, 2),
        leave_one_out_advantages(scores, 2),
        batch_normalized_advantages(scores),
    ):
        assert not adv.requires_grad
