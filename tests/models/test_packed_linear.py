"""Packed bf16 linears for CPU inference: same results as F.linear, never stale, always undone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alignkit.models import packed_linear as pl
from alignkit.models.packed_linear import PackedLinear, packed_linears, packing_unavailable


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
    monkeypatch.setattr(pl, "_available_memory", lambda: 1000)  # bytes
    with torch.inference_mode(), packed_linears(net) as packed:
        assert packed == 0 and all(type(m) is nn.Linear for m in net)
