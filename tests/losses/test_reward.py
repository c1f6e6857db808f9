"""Reward-model losses against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses.reward import (
    batch_ranking_pairs,
    bradley_terry_loss,
    centering_loss,
    ranking_loss,
    ranking_pairs,
)


def test_bradley_terry_one_pair_by_hand():
    """r_c = 1, r_r = 0: -log σ(1) = -log(1 / (1 + e^-1)) = log(1 + e^-1) = 0.313261687..."""
    loss, stats = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)
    assert loss.item() == pytest.approx(0.31326, abs=1e-5)
    assert stats["reward/accuracy"].item() == 1.0
    assert stats["reward/margin"].item() == pytest.approx(1.0)
    assert stats["reward/chosen"].item() == pytest.approx(1.0)
    assert stats["reward/rejected"].item() == pytest.approx(0.0)


def test_bradley_terry_margin_by_hand_and_raises_loss():
    """Margin 0.5 on the same pair: -log σ(1 - 0.5) = log(1 + e^-0.5) = 0.474077..."""
    c, r = torch.tensor([1.0]), torch.tensor([0.0])
    plain, _ = bradley_terry_loss(c, r)
    with_margin, stats = bradley_terry_loss(c, r, margin=torch.tensor([0.5]))
    assert with_margin.item() == pytest.approx(math.log1p(math.exp(-0.5)), abs=1e-6)
    assert with_margin.item() > plain.item()
    # The margin changes the loss, not the reported gap or accuracy.
    assert stats["reward/margin"].item() == pytest.approx(1.0)
    assert stats["reward/accuracy"].item() == 1.0


def test_bradley_terry_larger_gap_lower_loss():
    rejected = torch.zeros(1)
    losses = [bradley_terry_loss(torch.tensor([g]), rejected)[0].item() for g in (-2.0, 0.0, 0.5, 3.0)]
    assert losses == sorted(losses, reverse=True)
    assert losses[1] == pytest.approx(math.log(2.0), abs=1e-6)  # equal scores: -log(1/2)


def test_bradley_terry_is_stable_for_large_gaps():
    loss, _ = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]))
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(200.0, rel=1e-6)  # -log σ(-200) ≈ 200


def test_bradley_terry_weights():
    """Pair losses l = (log(1+e^-1), log 2); weights (3, 1) -> (3 l0 + l1) / 4."""
    c, r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    l0, l1 = math.log1p(math.exp(-1.0)), math.log(2.0)
    loss, stats = bradley_terry_loss(c, r, weights=torch.tensor([3.0, 1.0]))
    assert loss.item() == pytest.approx((3 * l0 + l1) / 4, abs=1e-6)
    # Accuracy is weighted like the loss; the tie counts one half: (3 * 1 + 1 * 0.5) / 4.
    assert stats["reward/accuracy"].item() == pytest.approx(0.875)
    unweighted, _ = bradley_terry_loss(c, r)
    assert unweighted.item() == pytest.approx((l0 + l1) / 2, abs=1e-6)
    ones, _ = bradley_terry_loss(c, r, weights=torch.ones(2))
    assert ones.item() == pytest.approx(unweighted.item(), abs=1e-7)


def test_bradley_terry_accuracy_counts_ties_half():
    _, stats = bradley_terry_loss(torch.tensor([1.0, 0.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 1.0, 2.0]))
    assert stats["reward/accuracy"].item() == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)


def test_bradley_terry_gradient_signs():
    """d loss / d r_c = -(1 - σ(r_c - r_r)) < 0; d loss / d r_r = +(1 - σ(...)) > 0."""
    c = torch.tensor([1.0], requires_grad=True)
    r = torch.tensor([0.0], requires_grad=True)
    loss, stats = bradley_terry_loss(c, r)
    loss.backward()
    expected = 1.0 - torch.sigmoid(torch.tensor(1.0)).item()
    assert c.grad.item() == pytest.approx(-expected, abs=1e-6)
    assert r.grad.item() == pytest.approx(expected, abs=1e-6)
    assert not stats["reward/margin"].requires_grad


def test_bradley_terry_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="rejected_scores"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="margin"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(3), margin=torch.zeros(1))


def test_ranking_pairs_three_with_a_tie_gives_two_pairs():
    better, worse = ranking_pairs([0, 1, 1])
    assert better.tolist() == [0, 0]
    assert worse.tolist() == [1, 2]


def test_ranking_pairs_orders_by_rank_not_position():
    better, worse = ranking_pairs([2, 0, 1], offset=10)
    pairs = set(zip(better.tolist(), worse.tolist(), strict=True))
    # ranks: answer 1 best, then 2, then 0.
    assert pairs == {(11, 10), (12, 10), (11, 12)}


def test_batch_ranking_pairs_offsets_and_weights():
    better, worse, weights = batch_ranking_pairs([[0, 1, 2], [1, 0], [0, 0]])
    # Group 0 (positions 0..2): 3 pairs, weight 1/3; group 1 (positions 3..4): 1 pair; group 2: all tie.
    assert list(zip(better.tolist(), worse.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2), (4, 3)]
    assert weights.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])


def test_ranking_loss_gathers_each_answer_once():
    """Two rankings scored in one (5,) vector; the loss is the mean of each ranking's mean pair loss."""
    scores = torch.tensor([2.0, 1.0, -1.0, 0.3, 0.7], requires_grad=True)
    better, worse, weights = batch_ranking_pairs([[0, 1, 2], [1, 0]])
    loss, _ = ranking_loss(scores, better, worse, weights)

    def pair(a: float, b: float) -> float:
        return math.log1p(math.exp(-(a - b)))

    group0 = (pair(2.0, 1.0) + pair(2.0, -1.0) + pair(1.0, -1.0)) / 3
    group1 = pair(0.7, 0.3)
    assert loss.item() == pytest.approx((group0 + group1) / 2, abs=1e-6)

    # Same value and gradient as explicit per-pair tensors built from copies of the scores.
    loss.backward()
    ref = scores.detach().clone().requires_grad_(True)
    c = torch.stack([ref[0], ref[0], ref[1], ref[4]])
    r = torch.stack([ref[1], ref[2], ref[2], ref[3]])
    ref_loss, _ = bradley_terry_loss(c, r, weights=weights)
    ref_loss.backward()
    assert torch.allclose(scores.grad, ref.grad, atol=1e-7)
    # The middle answer of group 0 is better than one answer and worse than another: both pushes meet there.
    assert scores.grad[0] < 0 < scores.grad[2]


def test_ranking_loss_weights_make_each_ranking_one_comparison():
    """A 4-answer ranking with all pairs at loss a and a 2-answer one with loss b average to (a + b) / 2."""
    scores = torch.tensor([3.0, 2.0, 1.0, 0.0, 0.0, 0.0])
    better, worse, weights = batch_ranking_pairs([[0, 1, 2, 3], [0, 1]])
    loss, _ = ranking_loss(scores, better, worse, weights)
    big_group = [
        math.log1p(math.exp(-(a - b)))
        for i, a in enumerate([3.0, 2.0, 1.0, 0.0])
        for b in [3.0, 2.0, 1.0, 0.0][i + 1 :]
    ]
    assert len(big_group) == 6
    assert loss.item() == pytest.approx((sum(big_group) / 6 + math.log(2.0)) / 2, abs=1e-6)


def test_ranking_loss_without_pairs_is_an_error():
    better, worse, weights = batch_ranking_pairs([[1, 1]])
    with pytest.raises(ValueError, match="no pairs"):
        ranking_loss(torch.zeros(2), better, worse, weights)


def test_centering_loss_two_pairs():
    """r_c = (1, 2), r_r = (-1, 0): sums (0, 2), squares (0, 4), mean 2."""
    loss, stats = centering_loss(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0]))
    assert loss.item() == pytest.approx(2.0)
    assert stats["reward/mean"].item() == pytest.approx(0.5)


def test_centering_loss_is_shift_sensitive_where_bradley_terry_is_not():
    c, r = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])
    assert bradley_terry_loss(c + 5, r + 5)[0].item() == pytest.approx(bradley_terry_loss(c, r)[0].item())
    assert centering_loss(c + 5, r + 5)[0].item() > centering_loss(c, r)[0].item()
