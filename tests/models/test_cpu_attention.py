"""The bf16 CPU training attention: same results as SDPA within bf16 resolution, same masks, same gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alignkit.models.cpu_attention import cpu_bf16_attention, use_cpu_bf16_attention


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def sdpa_reference(q, k, v, mask):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


@pytest.mark.parametrize("masked", [False, True])
def test_matches_fp64_attention_to_bf16_resolution_with_gqa(masked):
    torch.manual_seed(0)
    b, h, kv, t, d = 2, 6, 2, 40, 16
    q, k, v = torch.randn(b, h, t, d), torch.randn(b, kv, t, d), torch.randn(b, kv, t, d)
    mask = torch.ones(t, t, dtype=torch.bool).tril().expand(b, 1, t, t).clone()
    if masked:
        mask[0, :, :, :5] = False  # row 0: the first 5 keys are padding (left-padded)
        mask[0, 0, torch.arange(5), torch.arange(5)] = True  # a padding query sees itself
    grad = torch.randn(b, t, h, d)
    results = {}
    for name, dtype in (("reference", torch.float64), ("ours", torch.bfloat16), ("sdpa", torch.bfloat16)):
        qq, kk, vv = (x.to(dtype).requires_grad_() for x in (q, k, v))
        if name == "ours":
            out, _ = cpu_bf16_attention(torch.nn.Module(), qq, kk, vv, mask, scaling=d**-0.5)
        else:
            out = sdpa_reference(qq, kk, vv, mask)
        out.backward(grad.to(dtype))
        results[name] = [out, qq.grad, kk.grad, vv.grad]
    for ours, sdpa, ref in zip(results["ours"], results["sdpa"], results["reference"], strict=True):
        assert ours.shape == ref.shape
        assert relative(ours, ref) < 0.03  # bf16 resolution (2^-8 = 0.004 per value)
        assert relative(ours, ref) < 4 * relative(sdpa, ref) + 1e-3  # not far from SDPA's own bf16 error


def test_no_mask_means_causal():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 8, 8, dtype=torch.bfloat16) for _ in range(3))
    out, _ = cpu_bf16_attention(torch.nn.Module(), q, k, v, None)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
    assert relative(out, expected) < 0.02


def test_a_model_switched_to_it_gives_sdpas_hidden_states(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    assert use_cpu_bf16_attention(model)
    assert model.config._attn_implementation == "alignkit_cpu_bf16"
    ids = torch.randint(3, 500, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0  # right padding
    ours = model(input_ids=ids, attention_mask=mask).logits.float()
    theirs = reference(input_ids=ids, attention_mask=mask).logits.float()
    real = mask.bool()
    assert relative(ours[real], theirs[real]) < 0.02
    # a config saved afterwards does not name the private attention
    assert "alignkit_cpu_bf16" not in model.config.to_json_string()


def test_only_sdpa_models_are_switched(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="eager")
    assert not use_cpu_bf16_attention(eager)
    assert eager.config._attn_implementation == "eager"


def test_rm_and_dpo_train_in_bf16_with_it_like_with_sdpa(tmp_path, tiny_model_dir, capsys, monkeypatch):
    import json
    import sys
    from pathlib import Path

    from alignkit.cli import main
    from alignkit.models.device import cpu_has_bf16
    from alignkit.runs import read_metrics

    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")  # on a GPU machine the commands would train on the GPU
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainers"))
    from test_rm import write_pairs  # noqa: E402

    from alignkit.models import cpu_attention

    calls = []
    original = cpu_attention.cpu_bf16_attention
    monkeypatch.setattr(
        cpu_attention, "cpu_bf16_attention", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    losses = {}
    for command in ("rm", "dpo"):
        for flag in ("--cpu-attention", "--no-cpu-attention"):
            out = tmp_path / f"{command}{flag}"
            args = [
                command,
                "--config",
                str(recipes / f"{command}_tiny.yaml"),
                "--model",
                str(tiny_model_dir),
            ]
            args += ["--data", str(data), "--output", str(out), "--dtype", "bf16", "--max-steps", "2", flag]
            calls.clear()
            assert main([*args, "--json", "--quiet"]) == 0
            assert bool(calls) == (flag == "--cpu-attention")
            json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            losses[command, flag] = [
                r["loss/total"] for r in read_metrics(out / "metrics.jsonl") if "loss/total" in r
            ]
        on, off = losses[command, "--cpu-attention"], losses[command, "--no-cpu-attention"]
        assert len(on) == len(off) == 2
        assert on == pytest.approx(off, rel=0.05, abs=0.02)  # bf16 rounding differs, the training does not


def test_training_keeps_no_attention_probabilities_for_the_backward_pass():
    """The (T x T) probabilities are recomputed in the backward pass, not saved (memory stays linear in T)."""
    b, h, kv, t, d = 1, 6, 2, 64, 16
    q, k, v = (torch.randn(b, n, t, d, dtype=torch.bfloat16, requires_grad=True) for n in (h, kv, kv))
    mask = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: saved.append(x.numel()) or x, lambda x: x):
        out, _ = cpu_bf16_attention(torch.nn.Module(), q, k, v, mask)
    assert saved and max(saved) < h * t * t  # nothing the size of every head's scores
    out.float().sum().backward()
    assert q.grad is not None and k.grad is not None and torch.isfinite(v.grad.float()).all()
