"""PPO maths against hand-computed numbers and a slow, obvious reference loop."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses.advantages import RunningMoments, clip_rewards, gae, per_token_rewards
from alignkit.losses.kl import AdaptiveKLController, FixedKLController, kl_penalty
from alignkit.losses.logits import entropy_from_logits, logprobs_from_logits
from alignkit.losses.masked import masked_mean, masked_var, masked_whiten
from alignkit.losses.ppo import clipped_policy_loss, clipped_value_loss

E = math.e


def ragged_mask() -> torch.Tensor:
    """(4, 7): right-padded, left-padded (prompt first), a gap inside, and an empty row."""
    return torch.tensor(
        [
            [1, 1, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 1, 1],
            [0, 1, 1, 0, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=torch.bool,
    )


# --------------------------------------------------------------------------- masked statistics


def test_masked_mean_ignores_masked_entries_even_nan():
    x = torch.tensor([[1.0, 2.0, float("nan")], [4.0, float("inf"), 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    assert masked_mean(x, mask).item() == pytest.approx((1 + 2 + 4 + 6) / 4)
    assert masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 5.0])
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0  # guarded, not NaN


def test_masked_var_matches_torch_var_on_selected_entries():
    torch.manual_seed(0)
    x = torch.randn(4, 7, dtype=torch.float64)
    mask = ragged_mask()
    assert masked_var(x, mask).item() == pytest.approx(x[mask].var().item(), rel=1e-12)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(
        x[mask].var(unbiased=False).item(), rel=1e-12
    )
    one = torch.zeros_like(mask)
    one[0, 0] = True
    assert masked_var(x, one).item() == 0.0  # a single value: 0, not NaN


@pytest.mark.parametrize("shift_mean", [True, False])
def test_masked_whiten_invariants(shift_mean):
    torch.manual_seed(1)
    x = 3.0 + 5.0 * torch.randn(4, 7, dtype=torch.float64)
    mask = ragged_mask()
    w = masked_whiten(x, mask, shift_mean=shift_mean)
    expected_mean = 0.0 if shift_mean else masked_mean(x, mask).item()
    assert masked_mean(w, mask).item() == pytest.approx(expected_mean, abs=1e-9)
    assert masked_var(w, mask).item() == pytest.approx(1.0, abs=1e-8)  # σ²/(σ²+1e-8), σ² ≈ 25
    assert (w[~mask] == 0).all()
    # Whitening is affine on the masked entries: order is kept.
    assert torch.equal(torch.argsort(w[mask]), torch.argsort(x[mask]))


# --------------------------------------------------------------------------- KL estimators


def test_kl_estimators_by_hand():
    """d = logp - ref_logp = +1 and -1.  k3 = e^{-d} - 1 + d: e^-1 ≈ 0.3679 and e - 2 ≈ 0.7183."""
    logps = torch.tensor([[-1.0, -2.0]])
    ref_logps = torch.tensor([[-2.0, -1.0]])
    assert kl_penalty(logps, ref_logps, "k1")[0].tolist() == pytest.approx([1.0, -1.0])
    assert kl_penalty(logps, ref_logps, "k2")[0].tolist() == pytest.approx([0.5, 0.5])
    assert kl_penalty(logps, ref_logps, "k3")[0].tolist() == pytest.approx([1 / E, E - 2], abs=1e-6)
    assert kl_penalty(logps, ref_logps, "abs")[0].tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="k1, k2, k3, abs"):
        kl_penalty(logps, ref_logps, "k4")


def test_k3_is_non_negative_and_zero_at_equality():
    d = torch.linspace(-30, 30, 10001)
    k3 = kl_penalty(d, torch.zeros_like(d), "k3")
    assert (k3 >= 0).all()
    assert kl_penalty(torch.full((3,), -2.5), torch.full((3,), -2.5), "k3").abs().max().item() == 0.0


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_estimators_match_exact_kl_monte_carlo(estimator):
    """Tokens x ~ π over V = 10; E_π[k(x)] = KL(π || ρ) for k1 and k3.

    The tolerance is 4 standard errors of the sample mean (std / sqrt(N)), with a fixed seed;
    the test also checks that this tolerance is under 3% of the KL, so a biased estimator fails.
    """
    gen = torch.Generator().manual_seed(1234)
    logits_pi = torch.randn(10, generator=gen, dtype=torch.float64)
    logits_ref = torch.randn(10, generator=gen, dtype=torch.float64)
    log_pi, log_ref = logits_pi.log_softmax(-1), logits_ref.log_softmax(-1)
    exact = (log_pi.exp() * (log_pi - log_ref)).sum().item()

    n = 200_000
    x = torch.multinomial(log_pi.exp(), n, replacement=True, generator=gen)
    k = kl_penalty(log_pi[x].unsqueeze(0), log_ref[x].unsqueeze(0), estimator)  # (1, N)
    se = k.std().item() / math.sqrt(n)
    assert 4 * se < 0.03 * exact
    assert abs(k.mean().item() - exact) < 4 * se
    # k2 is biased: its mean sits well outside the same band.
    k2 = kl_penalty(log_pi[x].unsqueeze(0), log_ref[x].unsqueeze(0), "k2")
    assert abs(k2.mean().item() - exact) > 4 * k2.std().item() / math.sqrt(n)


# --------------------------------------------------------------------------- rewards and GAE


def test_per_token_rewards_score_at_last_response_token():
    mask = ragged_mask()
    kl = torch.ones(4, 7)
    scores = torch.tensor([10.0, 20.0, 30.0, 40.0])
    rewards = per_token_rewards(scores, kl, mask, kl_coef=0.1)
    expected = torch.where(mask, torch.full((4, 7), -0.1), torch.zeros(4, 7))
    expected[0, 4] += 10.0  # right-padded: last real token at 4
    expected[1, 6] += 20.0  # left-padded: the row ends with the response
    expected[2, 5] += 30.0  # gap inside: last True is at 5
    # Row 3 has no response token: no rewards at all.
    assert torch.allclose(rewards, expected)
    assert not rewards.requires_grad


def test_per_token_rewards_uses_the_kl_values():
    mask = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    kl = torch.tensor([[9.0, 0.5, -0.2, 9.0]])
    rewards = per_token_rewards(torch.tensor([1.0]), kl, mask, kl_coef=0.2)
    assert rewards[0].tolist() == pytest.approx([0.0, -0.1, 0.04 + 1.0, 0.0])


def gae_reference(rewards, values, mask, gamma, lam):
    """Obvious nested loops: for each row, the textbook recursion over its real tokens only."""
    B, T = len(rewards), len(rewards[0])
    adv = [[0.0] * T for _ in range(B)]
    ret = [[0.0] * T for _ in range(B)]
    for b in range(B):
        steps = [t for t in range(T) if mask[b][t]]
        running = 0.0
        for k in reversed(range(len(steps))):
            t = steps[k]
            next_value = values[b][steps[k + 1]] if k + 1 < len(steps) else 0.0
            delta = rewards[b][t] + gamma * next_value - values[b][t]
            running = delta + gamma * lam * running
            adv[b][t] = running
            ret[b][t] = running + values[b][t]
    return adv, ret


def test_gae_three_steps_by_hand_gamma1_lambda1():
    """r = (1, 0, 2), V = (0.5, 1, 1.5), γ = λ = 1.

    A_t = (sum of rewards from t) - V_t: returns-to-go (3, 2, 2), so A = (2.5, 1.0, 0.5), R = (3, 2, 2).
    """
    r = torch.tensor([[1.0, 0.0, 2.0]])
    v = torch.tensor([[0.5, 1.0, 1.5]])
    adv, ret = gae(r, v, torch.ones(1, 3, dtype=torch.bool), gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([2.5, 1.0, 0.5])
    assert ret[0].tolist() == pytest.approx([3.0, 2.0, 2.0])


def test_gae_three_steps_by_hand_gamma09_lambda095():
    """r = (1, 0, 2), V = (0.5, 1, 1.5), γ = 0.9, λ = 0.95, γλ = 0.855.

    δ2 = 2 + 0 - 1.5 = 0.5;  δ1 = 0 + 0.9·1.5 - 1 = 0.35;  δ0 = 1 + 0.9·1 - 0.5 = 1.4
    A2 = 0.5;  A1 = 0.35 + 0.855·0.5 = 0.7775;  A0 = 1.4 + 0.855·0.7775 = 2.0647625
    R = A + V = (2.5647625, 1.7775, 2.0)
    The same tokens inside padding (prompt before, padding after) give the same numbers.
    """
    r = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64)
    v = torch.tensor([[0.5, 1.0, 1.5]], dtype=torch.float64)
    adv, ret = gae(r, v, torch.ones(1, 3, dtype=torch.bool), gamma=0.9, lam=0.95)
    assert adv[0].tolist() == pytest.approx([2.0647625, 0.7775, 0.5], abs=1e-12)
    assert ret[0].tolist() == pytest.approx([2.5647625, 1.7775, 2.0], abs=1e-12)

    padded_r = torch.tensor([[7.0, 1.0, 0.0, 2.0, 7.0]], dtype=torch.float64)
    padded_v = torch.tensor([[7.0, 0.5, 1.0, 1.5, 7.0]], dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 1, 0]], dtype=torch.bool)
    adv_p, ret_p = gae(padded_r, padded_v, mask, gamma=0.9, lam=0.95)
    assert adv_p[0].tolist() == pytest.approx([0.0, 2.0647625, 0.7775, 0.5, 0.0], abs=1e-12)
    assert ret_p[0].tolist() == pytest.approx([0.0, 2.5647625, 1.7775, 2.0, 0.0], abs=1e-12)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_gae_vectorised_equals_reference_loop_on_ragged_masks(gamma, lam):
    torch.manual_seed(2)
    rewards = torch.randn(4, 7, dtype=torch.float64)
    values = torch.randn(4, 7, dtype=torch.float64)
    mask = ragged_mask()
    adv, ret = gae(rewards, values, mask, gamma=gamma, lam=lam)
    ref_adv, ref_ret = gae_reference(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    assert torch.allclose(adv, torch.tensor(ref_adv, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ret, torch.tensor(ref_ret, dtype=torch.float64), atol=1e-12)
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()
    assert adv[0].abs().sum() > 0  # not trivially zero


def test_gae_gives_no_gradient():
    values = torch.randn(2, 3, requires_grad=True)
    adv, ret = gae(torch.randn(2, 3), values, torch.ones(2, 3, dtype=torch.bool))
    assert not adv.requires_grad and not ret.requires_grad


# --------------------------------------------------------------------------- PPO losses


def test_clipped_policy_loss_positive_advantage_is_clipped():
    """logp - old = 1 -> ratio = e; A = 1, ε = 0.2: -min(e·1, 1.2·1) = -1.2, and no gradient."""
    logps = torch.tensor([[0.0]], requires_grad=True)
    old = torch.tensor([[-1.0]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, stats = clipped_policy_loss(logps, old, torch.tensor([[1.0]]), mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(-1.2)
    assert stats["ppo/clipfrac"].item() == 1.0
    assert stats["ppo/ratio_mean"].item() == pytest.approx(E)
    assert stats["ppo/approx_kl"].item() == pytest.approx(0.5)  # 0.5 · 1²
    assert stats["ppo/approx_kl_k3"].item() == pytest.approx(E - 2)  # (e - 1) - 1
    loss.backward()
    assert logps.grad.item() == 0.0


def test_clipped_policy_loss_negative_advantage_keeps_unclipped():
    """A = -1: -min(-e, -1.2) = e; the min picks the unclipped term, gradient d/dlogp = -A·ratio = e."""
    logps = torch.tensor([[0.0]], requires_grad=True)
    old = torch.tensor([[-1.0]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, stats = clipped_policy_loss(logps, old, torch.tensor([[-1.0]]), mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(E)
    assert stats["ppo/clipfrac"].item() == 0.0
    loss.backward()
    assert logps.grad.item() == pytest.approx(E)


def test_clipped_policy_loss_masked_mean_and_clipfrac():
    """Tokens: (ratio e, A=1) -> -1.2 clipped; (ratio 1, A=2) -> -2; (ratio e^-1, A=1) -> -e^-1, not
    clipped (min picks the smaller ratio); a masked token with NaN is ignored.  Mean (-1.2 - 2 - e^-1)/3."""
    logps = torch.tensor([[0.0, -1.0, -2.0, float("nan")]])
    old = torch.tensor([[-1.0, -1.0, -1.0, 0.0]])
    adv = torch.tensor([[1.0, 2.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    loss, stats = clipped_policy_loss(logps, old, adv, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx((-1.2 - 2.0 - 1 / E) / 3, abs=1e-6)
    assert stats["ppo/clipfrac"].item() == pytest.approx(1 / 3)
    assert stats["ppo/ratio_mean"].item() == pytest.approx((E + 1 + 1 / E) / 3, abs=1e-6)


def test_clipped_policy_loss_larger_advantage_lower_loss_at_ratio_one():
    logps = torch.zeros(1, 3)
    mask = torch.ones(1, 3, dtype=torch.bool)
    small, s = clipped_policy_loss(logps, logps, torch.full((1, 3), 0.5), mask)
    large, _ = clipped_policy_loss(logps, logps, torch.full((1, 3), 2.0), mask)
    assert large.item() < small.item()
    assert small.item() == pytest.approx(-0.5)  # ratio 1: loss = -mean(A)
    assert s["ppo/approx_kl"].item() == 0.0 and s["ppo/clipfrac"].item() == 0.0


def test_clipped_value_loss_by_hand():
    """old V = 0, ε = 0.2, R and V per token:
    (V 0.5, R 1):  (0.5-1)² = 0.25, clipped V 0.2 -> 0.64; max 0.64            (clipped term wins)
    (V 0.5, R -1): 2.25, clipped 0.2 -> 1.44; max 2.25                          (unclipped wins)
    (V 0.1, R 1):  inside the range, both 0.81                                  (tie: not counted)
    loss = 0.5 · (0.64 + 2.25 + 0.81) / 3 = 0.61666...; clipfrac 1/3; value_error (0.25+2.25+0.81)/3.
    """
    values = torch.tensor([[0.5, 0.5, 0.1, 123.0]], requires_grad=True)
    old = torch.zeros(1, 4)
    returns = torch.tensor([[1.0, -1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    loss, stats = clipped_value_loss(values, old, returns, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 2.25 + 0.81) / 3, abs=1e-6)
    assert stats["ppo/value_clipfrac"].item() == pytest.approx(1 / 3)
    assert stats["ppo/value_error"].item() == pytest.approx((0.25 + 2.25 + 0.81) / 3, abs=1e-6)
    loss.backward()
    # The clipped token has no gradient; the others get (V - R) / 3 (0.5 · 2(V - R) / 3).
    assert values.grad[0].tolist() == pytest.approx([0.0, 1.5 / 3, -0.9 / 3, 0.0], abs=1e-6)


# --------------------------------------------------------------------------- from logits


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.3])
def test_logprobs_from_logits_matches_log_softmax_gather(temperature):
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    tokens = torch.randint(0, 11, (2, 5))
    got = logprobs_from_logits(logits, tokens, temperature=temperature)
    want = torch.log_softmax(logits / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(got, want, atol=1e-6)
    # Chunking that cuts through rows of the batch changes nothing, gradients included.
    chunked = logprobs_from_logits(logits, tokens, temperature=temperature, chunk_rows=3)
    assert torch.allclose(chunked, want, atol=1e-6)
    (g1,) = torch.autograd.grad(chunked.sum(), logits)
    (g2,) = torch.autograd.grad(want.sum(), logits)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_logprobs_from_logits_temperature_matters_and_validates():
    logits = torch.tensor([[[2.0, 0.0]]])
    tokens = torch.tensor([[0]])
    # τ = 1: log(e² / (e² + 1));  τ = 2: log(e / (e + 1)).
    assert logprobs_from_logits(logits, tokens).item() == pytest.approx(-math.log1p(math.exp(-2.0)))
    assert logprobs_from_logits(logits, tokens, 2.0).item() == pytest.approx(-math.log1p(math.exp(-1.0)))
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, tokens, 0.0)
    with pytest.raises(ValueError, match="do not match"):
        logprobs_from_logits(logits, torch.tensor([[0, 1]]))


def test_logprobs_from_logits_bfloat16_computed_in_float32():
    torch.manual_seed(4)
    logits = torch.randn(1, 4, 50).to(torch.bfloat16)
    tokens = torch.randint(0, 50, (1, 4))
    got = logprobs_from_logits(logits, tokens)
    want = torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-6)


def test_entropy_from_logits():
    torch.manual_seed(5)
    logits = torch.randn(3, 4, 9)
    want = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    assert torch.allclose(entropy_from_logits(logits), want, atol=1e-6)
    assert torch.allclose(entropy_from_logits(logits, chunk_rows=5), want, atol=1e-6)

    special = torch.tensor(
        [[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -float("inf"), -float("inf")], [1e4, 0.0, 0.0, 0.0]]]
    )
    h = entropy_from_logits(special)
    assert h[0, 0].item() == pytest.approx(math.log(4))  # uniform over 4
    assert h[0, 1].item() == pytest.approx(math.log(2))  # banned tokens add nothing, no NaN
    assert h[0, 2].item() == pytest.approx(0.0, abs=1e-6)  # one certain token, no overflow


# --------------------------------------------------------------------------- KL controllers


def test_adaptive_kl_controller_moves_towards_target_with_clipping():
    """β = 0.2, target 6, horizon 10000, n_steps 256:
    KL 12  -> error 1 clipped to 0.2   -> β · (1 + 0.2 · 0.0256)
    KL 6.6 -> error 0.1 (inside clip)  -> β · (1 + 0.1 · 0.0256)
    KL 3   -> error -0.5 clipped -0.2  -> β · (1 - 0.2 · 0.0256)
    KL 6   -> error 0                  -> unchanged
    """
    for kl, factor in [(12.0, 1.00512), (6.6, 1.00256), (3.0, 0.99488), (6.0, 1.0)]:
        ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
        ctl.update(kl, n_steps=256)
        assert ctl.value == pytest.approx(0.2 * factor, rel=1e-12)
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    ctl.update(torch.tensor(100.0), n_steps=256)  # a 0-d tensor works too
    assert ctl.value == pytest.approx(0.2 * 1.00512, rel=1e-12)


def test_kl_controllers_state_round_trip():
    ctl = AdaptiveKLController(0.1, target=4.0, horizon=1000)
    for kl in (8.0, 1.0, 5.0):
        ctl.update(kl, n_steps=64)
    resumed = AdaptiveKLController(1.0, target=1.0, horizon=1.0)
    resumed.load_state_dict(ctl.state_dict())
    ctl.update(7.0, 64)
    resumed.update(7.0, 64)
    assert resumed.value == ctl.value and resumed.target == 4.0

    fixed = FixedKLController(0.05)
    fixed.update(100.0, 64)
    assert fixed.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(fixed.state_dict())
    assert other.value == 0.05
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)


# --------------------------------------------------------------------------- reward normalisation


def test_running_moments_equal_torch_over_concatenated_batches():
    torch.manual_seed(6)
    batches = [3 + 2 * torch.randn(5), torch.randn(1), 10 + torch.randn(2, 17), torch.randn(0)]
    rm = RunningMoments()
    for b in batches:
        rm.update(b)
    everything = torch.cat([b.reshape(-1) for b in batches]).double()
    assert rm.count == everything.numel()
    assert rm.mean == pytest.approx(everything.mean().item(), rel=1e-12)
    assert rm.std == pytest.approx(everything.std().item(), rel=1e-12)

    resumed = RunningMoments()
    resumed.load_state_dict(rm.state_dict())
    extra = torch.randn(4)
    rm.update(extra)
    resumed.update(extra)
    assert resumed.state_dict() == rm.state_dict()

    x = torch.tensor([rm.mean, rm.mean + rm.std], dtype=torch.float64)
    assert rm.normalize(x).tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert rm.normalize(x, shift_mean=False).tolist() == pytest.approx((x / rm.std).tolist(), rel=1e-6)


def test_running_moments_empty_and_single():
    rm = RunningMoments()
    assert rm.var == 0.0
    rm.update(torch.tensor([4.0]))
    assert rm.mean == 4.0 and rm.var == 0.0


@pytest.mark.parametrize("first", [[2.5] * 4, [0.1] * 3, [-1.75]], ids=["equal", "equal-inexact-mean", "one"])
def test_running_moments_do_not_blow_up_on_a_first_batch_without_spread(first):
    """Guards issue 24.4: equal first-batch scores (or one score: batch x processes = 1) have std ~0, and
    ``--score-norm scale`` divided them by ~1e-8. Until the std is meaningful the scores stay unscaled."""
    rm = RunningMoments()
    x = torch.tensor(first)
    rm.update(x)
    for shift_mean in (False, True):
        out = rm.normalize(x, shift_mean=shift_mean)
        assert torch.isfinite(out).all() and out.abs().max() <= x.abs().max() + 1e-6
    assert rm.normalize(x, shift_mean=False).tolist() == pytest.approx(first)  # not scaled
    assert rm.normalize(x).abs().max() <= 1e-6  # whitened: centred only
    spread = torch.tensor([0.0, 4.0])  # once the scores spread, normalize divides by the running std
    rm.update(spread)
    assert rm.std > rm.min_std
    assert rm.normalize(spread, shift_mean=False).tolist() == pytest.approx((spread / rm.std).tolist())


def test_clip_rewards():
    x = torch.tensor([-7.0, -1.0, 0.5, 9.0])
    assert clip_rewards(x, 5.0).tolist() == [-5.0, -1.0, 0.5, 5.0]
    with pytest.raises(ValueError):
        clip_rewards(x, 0.0)


def test_logprobs_and_entropy_match_the_separate_functions():
    """One float32 pass gives what `logprobs_from_logits` and `entropy_from_logits(logits / τ)` give, with the
    gradient of the log-probs; a -inf logit (a banned token) adds 0 to the entropy."""
    from alignkit.losses.logits import entropy_from_logits, logprobs_and_entropy, logprobs_from_logits

    torch.manual_seed(0)
    logits = (torch.randn(37, 50) * 3).requires_grad_()
    logits_banned = logits.detach().clone()
    logits_banned[:, 7] = float("-inf")
    tokens = torch.randint(0, 50, (37,))
    tokens[tokens == 7] = 8
    for tau in (1.0, 0.7):
        for values in (logits, logits_banned):
            logp, ent = logprobs_and_entropy(values, tokens, tau, chunk_rows=5)
            want = logprobs_from_logits(values[:, None], tokens[:, None], tau)[:, 0]
            assert torch.allclose(logp, want, atol=1e-5)
            assert torch.allclose(ent, entropy_from_logits((values.detach() / tau)[:, None])[:, 0], atol=1e-4)
            assert torch.isfinite(ent).all()
    logp, _ = logprobs_and_entropy(logits, tokens, 0.7)
    logp.sum().backward()
    expected = torch.autograd.grad(logprobs_from_logits(logits[:, None], tokens[:, None], 0.7).sum(), logits)[
        0
    ]
    assert torch.allclose(logits.grad, expected, atol=1e-5)
    assert logprobs_and_entropy(logits, tokens, with_entropy=False)[1] is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logprobs_and_entropy_backward_is_autograds(dtype):
    """The written-out backward equals autograd's through log_softmax, for weighted log-probs, in the logits'
    own dtype; the caller's logits are never modified; a banned (-inf) logit gets no gradient."""
    from alignkit.losses.logits import logprobs_and_entropy

    torch.manual_seed(1)
    base = torch.randn(29, 40) * 4
    base[3, 11] = float("-inf")
    tokens = torch.randint(0, 40, (29,))
    tokens[3] = 12
    weights = torch.randn(29)
    for tau in (1.0, 1.3):
        logits = base.to(dtype, copy=True).requires_grad_()
        before = logits.detach().clone()
        logp, ent = logprobs_and_entropy(logits, tokens, tau, chunk_rows=4)
        (weights * logp).sum().backward()
        assert torch.equal(logits.detach(), before)
        assert logits.grad.dtype == dtype and not ent.requires_grad
        ref = before.float().requires_grad_()
        want = torch.log_softmax(ref / tau, -1).gather(-1, tokens[:, None]).squeeze(-1)
        (weights * want).sum().backward()
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(logp, want.detach(), atol=tol * 10, rtol=tol)
        torch.testing.assert_close(logits.grad.float(), ref.grad, atol=tol, rtol=tol)
        assert logits.grad[3, 11] == 0
