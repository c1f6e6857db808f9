"""Token choice: inverse-CDF sampling, top-k, top-p, bans and log-probabilities on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.sampling.pick import pick_tokens


def _grid(rows: int) -> torch.Tensor:
    """Evenly spread uniforms: the sampled counts then follow the distribution up to +-1."""
    return (torch.arange(rows, dtype=torch.float32) + 0.5) / rows


@pytest.mark.parametrize("vocab", [8, 4096])  # one-level cumsum, and the two-level (block) search
def test_inverse_cdf_reproduces_the_distribution(vocab):
    """With u on an even grid of N points, token i is drawn round(N * p_i) times (+-1)."""
    torch.manual_seed(0)
    logits = torch.randn(vocab) * 2
    logits[3] = -math.inf  # impossible token
    rows = 20000
    tokens, _ = pick_tokens(logits.expand(rows, vocab), _grid(rows))
    counts = torch.bincount(tokens, minlength=vocab).float()
    expected = torch.softmax(logits, -1) * rows
    assert counts[3] == 0
    assert (counts - expected).abs().max() <= 1.0 + 1e-3


def test_temperature_sharpens_and_greedy_is_argmax():
    logits = torch.tensor([[1.0, 2.0, 0.5, 1.9]])
    u = _grid(4000)
    cold, _ = pick_tokens(logits.expand(4000, 4), u, temperature=0.1)
    hot, _ = pick_tokens(logits.expand(4000, 4), u, temperature=5.0)
    assert (cold == 1).float().mean() > 0.7 > (hot == 1).float().mean()
    greedy, logps = pick_tokens(logits, torch.tensor([0.99]), temperature=0.0, want_logps=True)
    assert greedy.item() == 1
    assert logps.item() == pytest.approx(torch.log_softmax(logits, -1)[0, 1].item(), abs=1e-6)


def test_top_k_keeps_only_the_k_best():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.9, -1.0])
    tokens, _ = pick_tokens(logits.expand(1000, 5), _grid(1000), top_k=2)
    assert set(tokens.tolist()) == {1, 3}


def test_top_p_keeps_the_nucleus():
    """p = [0.5, 0.3, 0.15, 0.05]: top_p 0.8 keeps the first two (0.5 < 0.8, 0.5 + 0.3 reaches it)."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    tokens, _ = pick_tokens(probs.log().expand(1000, 4), _grid(1000), top_p=0.8)
    counts = torch.bincount(tokens, minlength=4)
    assert counts[2] == counts[3] == 0
    assert abs(counts[0].item() - 625) <= 1  # renormalised: 0.5 / 0.8


def test_top_p_beyond_the_first_candidates_is_exact():
    """A flat distribution over 2048 tokens: the 0.5 nucleus needs 1024 of them (more than the first 64 looked at)."""
    vocab = 2048
    logits = torch.zeros(vocab)
    logits[:1024] = 1e-4  # a slight tilt orders the nucleus
    tokens, _ = pick_tokens(logits.expand(3000, vocab), _grid(3000), top_p=0.5)
    assert tokens.max() < 1024
    assert len(set(tokens.tolist())) > 900


def test_banned_tokens_are_never_drawn_but_logps_ignore_the_ban():
    logits = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    banned_rows = torch.tensor([True, False])
    tokens, logps = pick_tokens(
        logits,
        torch.tensor([0.0, 0.0]),
        banned_rows=banned_rows,
        banned_ids=torch.tensor([0]),
        want_logps=True,
    )
    assert tokens[0] != 0 and tokens[1] == 0
    full = torch.log_softmax(logits, -1)
    assert logps[0].item() == pytest.approx(full[0, tokens[0]].item(), abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_banned_logps_at_a_real_vocabulary_size(temperature):
    """The in-place softmax path at a real vocabulary (vectorised kernels): sampled tokens follow the
    softmax of the allowed tokens, log-probs are of the full tempered distribution, banned included."""
    torch.manual_seed(3)
    logits = (torch.randn(64, 49152) * 4).to(torch.bfloat16)
    banned_ids = torch.tensor([2, 7])
    logits[:, banned_ids] = 30.0  # most of the mass sits on the banned tokens
    banned_rows = torch.arange(64) % 2 == 0
    uniforms = torch.rand(64)
    tokens, logps = pick_tokens(
        logits,
        uniforms,
        temperature=temperature,
        banned_rows=banned_rows,
        banned_ids=banned_ids,
        want_logps=True,
    )
    scaled = logits.float() / temperature
    expected = torch.log_softmax(scaled, -1).gather(1, tokens[:, None])[:, 0]
    assert torch.allclose(logps, expected, atol=1e-4)
    assert not torch.isin(tokens[banned_rows], banned_ids).any()
    # Each banned row's token is the inverse-CDF draw of the softmax over the allowed tokens.
    allowed = scaled.clone()
    allowed[:, banned_ids] = float("-inf")
    cdf = torch.softmax(allowed, -1).double().cumsum(-1)
    drawn = torch.searchsorted(cdf, uniforms.double()[:, None]).squeeze(1)
    assert (tokens[banned_rows] == drawn[banned_rows]).float().mean() > 0.9  # rounding may move a few


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (3, 1.0), (0, 0.7), (4, 0.9)])
def test_logps_are_of_the_full_tempered_distribution(top_k, top_p):
    torch.manual_seed(1)
    logits = torch.randn(6, 50).to(torch.bfloat16)
    tokens, logps = pick_tokens(
        logits, torch.rand(6), temperature=0.7, top_k=top_k, top_p=top_p, want_logps=True
    )
    expected = torch.log_softmax(logits.float() / 0.7, -1).gather(1, tokens[:, None])[:, 0]
    assert torch.allclose(logps, expected, atol=1e-5)
    assert logits.dtype == torch.bfloat16  # the caller's logits are not modified


def test_fp32_logits_are_not_modified_in_place():
    logits = torch.randn(3, 10)
    copy = logits.clone()
    pick_tokens(
        logits,
        torch.rand(3),
        temperature=0.5,
        banned_rows=torch.tensor([True, True, True]),
        banned_ids=torch.tensor([1]),
    )
    assert torch.equal(logits, copy)
