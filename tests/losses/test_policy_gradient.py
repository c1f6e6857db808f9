"""Critic-free policy losses against hand-computed numbers and slow, obvious loops."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses.kl import kl_penalty
from alignkit.losses.policy_gradient import (
    aggregate_token_loss,
    clip_fractions,
    clipped_token_loss,
    kl_loss_term,
)
from alignkit.losses.ppo import clipped_policy_loss

E = math.e
LN = math.log


def ratios_to_logps(ratios: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logps, old_logps) float64 with exp(logps - old_logps) = ratios; logps requires grad."""
    old = torch.full((len(ratios), len(ratios[0])), -1.0, dtype=torch.float64)
    logps = (old + torch.tensor(ratios, dtype=torch.float64).log()).requires_grad_()
    return logps, old


# --------------------------------------------------------------------------- the clipped surrogate


def test_clipped_token_loss_by_hand():
    """ε_low = 0.2, ε_high = 0.28, so the clip range is [0.8, 1.28]; ratios (1.5, 0.5) in both rows.

    Row 0, A = +1: -min(1.5, 1.28) = -1.28 (high-clipped); -min(0.5, 0.8) = -0.5 (not clipped: below the
    range with A > 0 the unclipped term is the smaller).
    Row 1, A = -1: -min(-1.5, -1.28) = 1.5 (not clipped); -min(-0.5, -0.8) = 0.8 (low-clipped).
    Row 2, A = 0: loss 0, and nothing counts as clipped (TRL's strict A > 0 / A < 0).
    """
    logps, old = ratios_to_logps([[1.5, 0.5], [1.5, 0.5], [1.5, 0.5]])
    out = clipped_token_loss(logps, old, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64), 0.2, 0.28)
    assert out.loss.tolist() == [pytest.approx([-1.28, -0.5]), pytest.approx([1.5, 0.8]), [0.0, 0.0]]
    assert out.high_clipped.tolist() == [[True, False], [False, False], [False, False]]
    assert out.low_clipped.tolist() == [[False, False], [False, True], [False, False]]


def test_clipping_stops_the_gradient_on_the_right_side_only():
    """d L / d logp = -A · ratio where the unclipped term is taken, 0 where the clip is.

    Same tokens as the hand example: row 0 (A = +1) ratio 1.5 is clipped (grad 0), ratio 0.5 is not
    (grad -0.5); row 1 (A = -1) ratio 1.5 is not (grad 1.5), ratio 0.5 is clipped (grad 0).
    """
    logps, old = ratios_to_logps([[1.5, 0.5], [1.5, 0.5]])
    out = clipped_token_loss(logps, old, torch.tensor([1.0, -1.0], dtype=torch.float64), 0.2, 0.28)
    out.loss.sum().backward()
    assert logps.grad.tolist() == [pytest.approx([0.0, -0.5]), pytest.approx([1.5, 0.0])]


def test_clip_higher_is_asymmetric():
    """Ratio 1.25, A = +1: inside [0.8, 1.28] (loss -1.25, gradient -1.25) but outside a symmetric ε = 0.2
    (loss -1.2, no gradient). Ratio 0.75, A = -1: outside on the low side for both (loss 0.8)."""
    for eps_high, loss, grad, clipped in ((0.28, -1.25, -1.25, False), (0.2, -1.2, 0.0, True)):
        logps, old = ratios_to_logps([[1.25]])
        out = clipped_token_loss(logps, old, torch.tensor([1.0], dtype=torch.float64), 0.2, eps_high)
        out.loss.sum().backward()
        assert out.loss.item() == pytest.approx(loss) and logps.grad.item() == pytest.approx(grad)
        assert out.high_clipped.item() is clipped
        low = clipped_token_loss(*ratios_to_logps([[0.75]]), torch.tensor([-1.0]), 0.2, eps_high)
        assert low.loss.item() == pytest.approx(0.8) and low.low_clipped.item()


def test_clipped_token_loss_matches_a_loop_and_accepts_per_token_advantages():
    """Random ratios and advantages: each token by the definition with Python floats; a (B,) advantage
    equals the same advantage repeated over T; ratio exactly 1 gives -A and no clipping."""
    g = torch.Generator().manual_seed(0)
    logps = torch.randn(4, 6, generator=g, dtype=torch.float64) * 0.3 - 2.0
    old = logps + torch.randn(4, 6, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(4, generator=g, dtype=torch.float64)
    out = clipped_token_loss(logps, old, adv, 0.2, 0.28)
    for i in range(4):
        for j in range(6):
            r, a = math.exp(logps[i, j].item() - old[i, j].item()), adv[i].item()
            assert out.loss[i, j].item() == pytest.approx(-min(r * a, min(max(r, 0.8), 1.28) * a), rel=1e-12)
            assert out.low_clipped[i, j].item() == (r < 0.8 and a < 0)
            assert out.high_clipped[i, j].item() == (r > 1.28 and a > 0)
    per_token = clipped_token_loss(logps, old, adv.unsqueeze(1).expand(4, 6), 0.2, 0.28)
    assert torch.equal(per_token.loss, out.loss)
    same = clipped_token_loss(logps, logps.detach(), adv, 0.2, 0.28)
    assert torch.allclose(same.loss, -adv.unsqueeze(1).expand(4, 6)) and not same.high_clipped.any()


def test_symmetric_clip_with_bnpo_is_the_ppo_loss():
    """ε_low = ε_high = ε and a token-level mean over the batch (bnpo) is alignkit's PPO-clip loss."""
    g = torch.Generator().manual_seed(1)
    logps = torch.randn(3, 5, generator=g, dtype=torch.float64)
    old = logps + 0.4 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    adv = torch.randn(3, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]], dtype=torch.bool)
    ours = aggregate_token_loss(clipped_token_loss(logps, old, adv, 0.2, 0.2).loss, mask, "bnpo")
    ppo, _ = clipped_policy_loss(logps, old, adv.unsqueeze(1).expand(3, 5), mask, clip_eps=0.2)
    assert ours.item() == pytest.approx(ppo.item(), rel=1e-12)


def test_clipped_token_loss_rejects_bad_epsilons():
    logps = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="epsilon_low"):
        clipped_token_loss(logps, logps, torch.ones(1), 1.0, 0.2)
    with pytest.raises(ValueError, match="epsilon_low"):
        clipped_token_loss(logps, logps, torch.ones(1), 0.2, -0.1)


def test_clip_fractions_by_hand():
    """Hand example's clip flags, mask drops row 1's last token: low 0/3, high 1/3, region 1/3."""
    logps, old = ratios_to_logps([[1.5, 0.5], [1.5, 0.5]])
    out = clipped_token_loss(logps, old, torch.tensor([1.0, -1.0], dtype=torch.float64), 0.2, 0.28)
    stats = clip_fractions(out, torch.tensor([[1, 1], [1, 0]]))
    assert {k: v.item() for k, v in stats.items()} == pytest.approx(
        {"clip_ratio/low_mean": 0.0, "clip_ratio/high_mean": 1 / 3, "clip_ratio/region_mean": 1 / 3}
    )
    assert not any(v.requires_grad for v in stats.values())


# --------------------------------------------------------------------------- aggregation


LOSS = [[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0]]  # 100 sits on masked positions
MASK = [[1, 1, 1, 0], [1, 0, 0, 0]]


@pytest.mark.parametrize(
    ("loss_type", "kwargs", "expected"),
    [
        ("grpo", {}, 3.0),  # per answer (1+2+3)/3 = 2 and 4/1 = 4, then (2 + 4) / 2
        ("bnpo", {}, 2.5),  # (1+2+3+4) / 4 tokens
        ("dr_grpo", {"max_completion_length": 5}, 1.0),  # 10 / (B=2 x 5)
        ("dapo", {"num_items": 8}, 1.25),  # 10 / 8 tokens in the whole generation batch
        ("dapo", {"num_items": torch.tensor(8)}, 1.25),
    ],
)
def test_aggregate_by_hand(loss_type, kwargs, expected):
    """Per-token losses (1, 2, 3 | 4) on the masked positions; the values on masked positions never count."""
    loss = aggregate_token_loss(torch.tensor(LOSS), torch.tensor(MASK), loss_type, **kwargs)
    assert loss.dim() == 0 and loss.item() == pytest.approx(expected)


def test_aggregate_matches_a_loop_on_random_losses():
    """Each loss type by its definition, with Python sums over a ragged mask that has an empty row
    (grpo: that row's term is 0 but it still counts in 1/B, as in TRL)."""
    g = torch.Generator().manual_seed(2)
    loss = torch.randn(4, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 7, generator=g) < 0.6
    mask[2] = False
    rows = [[loss[i, j].item() for j in range(7) if mask[i, j]] for i in range(4)]
    total, n = sum(map(sum, rows)), sum(map(len, rows))
    grpo = sum(sum(r) / max(len(r), 1) for r in rows) / 4
    assert aggregate_token_loss(loss, mask, "grpo").item() == pytest.approx(grpo, rel=1e-12)
    assert aggregate_token_loss(loss, mask, "bnpo").item() == pytest.approx(total / n, rel=1e-12)
    dr = aggregate_token_loss(loss, mask, "dr_grpo", max_completion_length=16)
    assert dr.item() == pytest.approx(total / (4 * 16), rel=1e-12)
    dapo = aggregate_token_loss(loss, mask, "dapo", num_items=3 * n)
    assert dapo.item() == pytest.approx(total / (3 * n), rel=1e-12)


def test_aggregate_weights_long_and_short_answers_differently():
    """One short answer (1 token, loss 1) and one long one (4 tokens, loss 1 each): grpo weighs the short
    answer's token 4x the long ones' (each answer counts 1/2), the token-level types weigh tokens equally,
    so its gradient per token is 1/2 vs 1/8 under grpo and 1/5 for every token under bnpo."""
    loss = torch.ones(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    aggregate_token_loss(loss, mask, "grpo").backward()
    assert loss.grad.tolist() == [[0.5, 0, 0, 0], [0.125] * 4]
    loss.grad = None
    aggregate_token_loss(loss, mask, "bnpo").backward()
    assert loss.grad.tolist() == [pytest.approx([0.2, 0, 0, 0]), pytest.approx([0.2] * 4)]


def test_aggregate_ignores_nan_on_masked_positions():
    """A NaN on a masked position (e.g. a padded logit) does not reach the loss or its gradient."""
    loss = torch.tensor([[1.0, float("nan")], [3.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[True, False], [True, True]])
    for loss_type, kw in (
        ("grpo", {}),
        ("bnpo", {}),
        ("dr_grpo", {"max_completion_length": 2}),
        ("dapo", {"num_items": 3}),
    ):
        out = aggregate_token_loss(loss, mask, loss_type, **kw)
        out.backward()
        assert math.isfinite(out.item()) and torch.isfinite(loss.grad).all() and loss.grad[0, 1] == 0
        loss.grad = None


def test_aggregate_rejects_missing_arguments():
    loss, mask = torch.zeros(1, 2), torch.ones(1, 2)
    with pytest.raises(ValueError, match="max_completion_length"):
        aggregate_token_loss(loss, mask, "dr_grpo")
    with pytest.raises(ValueError, match="num_items"):
        aggregate_token_loss(loss, mask, "dapo")
    with pytest.raises(ValueError, match="unknown loss_type"):
        aggregate_token_loss(loss, mask, "sum")


# --------------------------------------------------------------------------- the KL term


def test_k3_is_deepseekmath_eq4_in_value_and_gradient():
    """GRPO's D_KL = π_ref/π - log(π_ref/π) - 1 (DeepSeekMath eq. 4, the expression TRL 1.16 uses) computed
    from probabilities, equals ``kl_penalty(logps, ref_logps, "k3")`` in value and in gradient w.r.t. logps.

    By hand: log π = -1, log π_ref = -2: π_ref/π = e^-1, D = e^-1 + 1 - 1 = 0.3679 (the policy put more
    mass on the token than the reference); swapped: π_ref/π = e, D = e - 1 - 1 = 0.7183; equal: 0.
    """
    logps = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-2.0, -1.0, -0.5]], dtype=torch.float64)
    ours = kl_penalty(logps, ref, "k3")
    assert ours.tolist()[0] == pytest.approx([1 / E, E - 2, 0.0], abs=1e-12)

    g = torch.Generator().manual_seed(3)
    logps = (torch.randn(3, 5, generator=g, dtype=torch.float64) - 2).requires_grad_()
    ref = torch.randn(3, 5, generator=g, dtype=torch.float64) - 2
    p, p_ref = logps.exp(), ref.exp()
    paper = p_ref / p - torch.log(p_ref / p) - 1
    ours = kl_penalty(logps, ref, "k3")
    assert torch.allclose(ours, paper, rtol=1e-10) and (ours >= 0).all()
    (grad_ours,) = torch.autograd.grad(ours.sum(), logps)
    (grad_paper,) = torch.autograd.grad(paper.sum(), logps)
    assert torch.allclose(grad_ours, grad_paper, rtol=1e-10)


def test_kl_loss_term_is_beta_times_k3():
    """β · k3 per token; β = 0 gives exact zeros (TRL's default skips the reference entirely)."""
    logps, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-2.0, -1.0]])
    assert kl_loss_term(logps, ref, 0.04).tolist()[0] == pytest.approx([0.04 / E, 0.04 * (E - 2)], rel=1e-6)
    assert kl_loss_term(logps, torch.full_like(ref, float("nan")), 0.0).tolist() == [[0.0, 0.0]]
