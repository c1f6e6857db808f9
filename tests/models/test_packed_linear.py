"""Packed bf16 linears for CPU inference: same results as F.linear, never stale, always undone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alignkit.models import packed_linear as pl
from alignkit.models.packed_linear import PackedLinear, packed_linears, packing_unavailable
from factories import needs_compiler


def _net(dtype=torch.bfloat16) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(96, 160, bias=True), nn.Linear(160, 64, bias=False), nn.Linear(64, 8)).to(
        dtype
    )


needs_packing = pytest.mark.skipif(
    packing_unavailable(_net()) is not None, reason=f"no packing here: {packing_unavailable(_net())}"
)


@needs_packing
@pytest.mark.parametrize("shape", [(5, 96), (4, 3, 96), (128, 1, 96)])
def test_packed_results_equal_f_linear_bit_for_bit(shape):
    net = _net()
    x = torch.randn(*shape).to(torch.bfloat16)
    with torch.inference_mode():
        expected = net(x)
        with packed_linears(net) as packed:
            assert packed == 2  # the 64 x 8 layer is too small to pack
            assert type(net[0]) is PackedLinear and type(net[2]) is nn.Linear
            got = net(x)
            strided_x = torch.randn(96, shape[0]).to(torch.bfloat16).t()  # non-contiguous input
            strided = net[0](strided_x)
    assert torch.equal(got, expected)
    with torch.inference_mode():
        assert torch.equal(strided, F.linear(strided_x, net[0].weight, net[0].bias))


@needs_packing
def test_everything_is_undone_on_exit_even_after_an_error():
    net = _net()
    with pytest.raises(RuntimeError, match="inside"), torch.inference_mode(), packed_linears(net):
        assert pl._PACKED
        raise RuntimeError("inside")
    assert all(type(m) is nn.Linear for m in net)
    assert not pl._PACKED


@needs_packing
def test_a_weight_changed_inside_the_context_is_not_served_stale():
    net = _net()
    x = torch.randn(7, 96).to(torch.bfloat16)
    with torch.inference_mode(), packed_linears(net):
        before = net[0](x)
        with torch.no_grad():
            net[0].weight.mul_(2.0)  # an optimiser step: same storage, new version
        after = net[0](x)
        assert torch.equal(after, F.linear(x, net[0].weight, net[0].bias))
        assert not torch.equal(after, before)


@needs_packing
def test_training_calls_inside_the_context_take_the_plain_differentiable_path():
    net = _net()
    x = torch.randn(3, 96).to(torch.bfloat16)
    with packed_linears(net):
        out = net(x).float().sum()
        out.backward()
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad.float()).all()


def test_fp32_layers_and_too_little_memory_are_left_alone(monkeypatch):
    net = _net(torch.float32)
    with torch.inference_mode(), packed_linears(net) as packed:
        assert packed == 0 and all(type(m) is nn.Linear for m in net)
    net = _net()
    monkeypatch.setattr(pl, "available_memory", lambda: 1000)  # bytes
    with torch.inference_mode(), packed_linears(net) as packed:
        assert packed == 0 and all(type(m) is nn.Linear for m in net)


# ------------------------------------------------------------------------------- siblings: q/k/v, gate/up


class _Block(nn.Module):
    """An attention-and-MLP shape: q/k/v on one input (k with a bias, q and v without), o on another;
    gate/up on a third; ``order`` says in which order q/k/v are called."""

    def __init__(self, order=("q", "k", "v")):
        super().__init__()
        torch.manual_seed(1)
        self.q, self.k, self.v = (
            nn.Linear(96, 128, bias=False),
            nn.Linear(96, 64),
            nn.Linear(96, 64, bias=False),
        )
        self.o = nn.Linear(128, 96)
        self.gate, self.up, self.down = nn.Linear(96, 160), nn.Linear(96, 160), nn.Linear(160, 96)
        self.order = order
        self.to(torch.bfloat16)

    def forward(self, x):
        out = {name: getattr(self, name)(x) for name in self.order}
        h = x + self.o(out["q"] * 0.5) + torch.cat([out["k"], out["v"]], dim=-1).sum(-1, keepdim=True)
        return h + self.down(F.silu(self.gate(h)) * self.up(h))


def _probe(model):
    return lambda: model(torch.zeros(1, 96, dtype=torch.bfloat16))


@needs_packing
def test_siblings_are_found_packed_together_and_give_the_plain_results():
    model = _Block()
    x = torch.randn(6, 96).to(torch.bfloat16)
    with torch.inference_mode():
        expected = model(x)
        with packed_linears(model, probe=_probe(model)) as packed:
            assert packed == 7
            assert [type(getattr(model, n)).__name__ for n in ("q", "k", "v", "o", "gate", "up", "down")] == [
                "SiblingLinear"
            ] * 3 + ["PackedLinear", "SiblingLinear", "SiblingLinear", "PackedLinear"]
            assert model.q.siblings.members == [model.q, model.k, model.v]
            assert model.gate.siblings is model.up.siblings and model.up.sibling_index == 1
            assert len(pl._PACKED) == 4  # q/k/v, o, gate/up, down
            got = model(x)
            assert model.q.siblings.input is None  # every output taken: nothing held
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert all(
        type(m) is nn.Linear and "siblings" not in m.__dict__ for m in model.modules() if m is not model
    )
    assert not pl._PACKED


@needs_packing
def test_siblings_serve_any_call_order_and_never_a_stale_output():
    model = _Block()
    x, y = torch.randn(2, 5, 96).to(torch.bfloat16)
    with torch.inference_mode():
        expected = {n: F.linear(x, getattr(model, n).weight, getattr(model, n).bias) for n in "qkv"}
        with packed_linears(model, probe=_probe(model)):
            model.order = ("v", "q", "k")  # another order than the probe's
            got = {n: getattr(model, n)(x) for n in model.order}
            first_q = model.q(x)  # q's output already taken: computed afresh
            k_of_y = model.k(y)  # another input than the one the outputs were made from
            v_of_x = model.v(x)  # the pending outputs were replaced by y's: computed afresh for x
    for n in "qkv":
        torch.testing.assert_close(got[n], expected[n], rtol=0, atol=0)
    torch.testing.assert_close(first_q, expected["q"], rtol=0, atol=0)
    torch.testing.assert_close(v_of_x, expected["v"], rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(k_of_y, F.linear(y, model.k.weight, model.k.bias), rtol=0, atol=0)


@needs_packing
def test_a_sibling_weight_changed_inside_the_context_is_not_served_stale():
    model = _Block()
    x = torch.randn(4, 96).to(torch.bfloat16)
    with torch.inference_mode(), packed_linears(model, probe=_probe(model)):
        for change in (lambda: model.k.bias.add_(1.0), lambda: model.v.weight.mul_(2.0)):  # bias, then weight
            with torch.no_grad():
                change()
            got = {n: getattr(model, n)(x) for n in "qkv"}
            for n in "qkv":
                layer = getattr(model, n)
                assert torch.equal(got[n], F.linear(x, layer.weight, layer.bias))


def test_find_siblings_skips_layers_called_more_than_once():
    model = _Block()
    model.v = model.k  # one layer called twice on the same input: in no group, and q is left alone
    layers = [m for m in model.modules() if type(m) is nn.Linear]
    groups = pl.find_siblings(layers, _probe(model))
    assert [[id(m) for m in g] for g in groups] == [[id(model.gate), id(model.up)]]


@needs_packing
def test_a_failing_probe_packs_every_layer_on_its_own():
    model = _Block()

    def probe():
        model(torch.zeros(1, 96, dtype=torch.bfloat16))
        raise ValueError("this model needs an attention mask")

    with torch.inference_mode(), packed_linears(model, probe=probe) as packed:
        assert packed == 7 and all(type(m) is PackedLinear for m in model.modules() if m is not model)
        assert all(not m._forward_pre_hooks for m in model.modules())


@needs_packing
@needs_compiler
def test_compiled_siblings_give_the_plain_compiled_results():
    model = _Block()
    x = torch.randn(3, 96).to(torch.bfloat16)
    compiled = torch.compile(model, dynamic=True)
    with torch.inference_mode():
        expected = compiled(x)  # plain layers: inductor's fusions, so the same rounding
        with packed_linears(model, probe=_probe(model)):
            got = compiled(x)
            assert model.q.siblings.input is None
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
