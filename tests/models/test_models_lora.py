"""Named LoRA adapters on one base: switching, reference, save/load, merge, backbone (tiny Llama)."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from alignkit.errors import ConfigError, ModelError
from alignkit.models import lora, registry
from alignkit.models.lora_merged import merged_for_inference

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
LLAMA_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def _perturb(model, name: str, seed: int) -> None:
    """Give adapter ``name`` non-zero lora_B (B starts at zero, which would make the adapter a no-op)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lora.adapter_parameters(model, name):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


@pytest.fixture
def batch(tokenizer):
    return tokenizer(["The quick brown fox jumps", "Hello"], padding=True, return_tensors="pt")


@pytest.fixture
def base_logits(tiny_model, batch):
    with torch.no_grad():
        return tiny_model(**batch).logits.clone()


@pytest.fixture
def two_adapters(tiny_model, base_logits):
    """tiny_model with trainable adapters 'policy' (active) and 'value', both perturbed."""
    model = lora.add_adapter(tiny_model, "policy", lora.LoraSettings(r=4, alpha=8))
    model = lora.add_adapter(model, "value", lora.LoraSettings(r=2, alpha=4))
    _perturb(model, "policy", seed=1)
    _perturb(model, "value", seed=2)
    return model


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_all_linear_targets_projections_not_lm_head(two_adapters):
    config = two_adapters.peft_config["policy"]
    assert sorted(config.target_modules) == LLAMA_LINEAR
    names = [name for name, _ in two_adapters.named_parameters() if "lora_" in name]
    assert names and not any("lm_head" in name or "embed" in name for name in names)
    assert config.bias == "none"


def test_base_frozen_and_adapters_trainable(two_adapters):
    policy = list(lora.trainable_parameters(two_adapters, "policy").values())
    value = list(lora.trainable_parameters(two_adapters, "value").values())
    assert policy and value
    # 2 layers x 7 projections x (A, B)
    assert len(policy) == len(value) == 2 * 7 * 2
    trainable = {id(p) for p in lora.trainable_parameters(two_adapters).values()}
    assert trainable == {id(p) for p in policy + value}
    assert lora.adapter_names(two_adapters) == ["policy", "value"]
    assert lora.active_adapter(two_adapters) == "policy"


def test_add_adapter_frozen_and_duplicate(two_adapters):
    model = lora.add_adapter(two_adapters, "reward", trainable=False)
    assert lora.adapter_parameters(model, "reward")
    assert list(lora.trainable_parameters(model, "reward").values()) == []
    assert lora.trainable_parameters(model, "policy")  # unchanged by adding another adapter
    with pytest.raises(ModelError, match="already exists"):
        lora.add_adapter(model, "reward")


def test_lora_settings_are_validated(tiny_model):
    with pytest.raises(ConfigError, match="r must be"):
        lora.LoraSettings(r=0)
    with pytest.raises(ConfigError, match="dropout"):
        lora.LoraSettings(dropout=1.0)
    with pytest.raises(ConfigError, match="q_projj"):
        lora.add_adapter(tiny_model, "policy", lora.LoraSettings(target_modules=["q_projj"]))
    with pytest.raises(ConfigError, match="adapter name"):
        lora.add_adapter(tiny_model, "bad.name")


def test_explicit_targets(tiny_model):
    model = lora.add_adapter(tiny_model, "policy", lora.LoraSettings(target_modules=["q_proj", "v_proj"]))
    assert sorted(model.peft_config["policy"].target_modules) == ["q_proj", "v_proj"]


def test_use_adapter_switches_and_restores(two_adapters, batch, base_logits):
    policy = _logits(two_adapters, batch)
    assert not torch.allclose(policy, base_logits, atol=1e-4)
    with lora.use_adapter(two_adapters, "value"):
        value = _logits(two_adapters, batch)
        assert lora.active_adapter(two_adapters) == "value"
    assert not torch.allclose(value, policy, atol=1e-4)
    assert lora.active_adapter(two_adapters) == "policy"
    torch.testing.assert_close(_logits(two_adapters, batch), policy)

    with pytest.raises(RuntimeError, match="boom"), lora.use_adapter(two_adapters, "value"):
        raise RuntimeError("boom")
    assert lora.active_adapter(two_adapters) == "policy"
    with pytest.raises(ModelError, match="no adapter named 'nope'"), lora.use_adapter(two_adapters, "nope"):
        pass


def test_reference_is_the_base_model(two_adapters, batch, base_logits):
    policy = _logits(two_adapters, batch)
    flags = [p.requires_grad for p in two_adapters.parameters()]
    with lora.reference(two_adapters) as ref:
        assert not torch.is_grad_enabled()
        torch.testing.assert_close(ref(**batch).logits, base_logits, rtol=0, atol=1e-6)
        with lora.use_adapter(two_adapters, "value"):  # switching inside keeps adapters off
            torch.testing.assert_close(ref(**batch).logits, base_logits, rtol=0, atol=1e-6)
    assert torch.is_grad_enabled()
    torch.testing.assert_close(_logits(two_adapters, batch), policy)  # adapter active again
    assert [p.requires_grad for p in two_adapters.parameters()] == flags


def test_reference_restores_after_an_exception(two_adapters, batch):
    policy = _logits(two_adapters, batch)
    flags = [p.requires_grad for p in two_adapters.parameters()]
    with pytest.raises(ValueError, match="inside"), lora.reference(two_adapters):
        raise ValueError("inside")
    torch.testing.assert_close(_logits(two_adapters, batch), policy)
    assert lora.active_adapter(two_adapters) == "policy"
    assert [p.requires_grad for p in two_adapters.parameters()] == flags


def test_reference_refuses_a_model_without_adapters(tiny_model, batch, base_logits):
    with pytest.raises(ModelError, match="frozen_copy"), lora.reference(tiny_model):
        pass
    ref = lora.frozen_copy(tiny_model)
    assert not any(p.requires_grad for p in ref.parameters()) and not ref.training
    with torch.no_grad():
        tiny_model.model.norm.weight.add_(1.0)  # training the policy must not move the reference
    torch.testing.assert_close(_logits(ref, batch), base_logits)
    assert not torch.allclose(_logits(tiny_model, batch), base_logits, atol=1e-4)


def test_gradients_reach_both_adapters_after_switching(two_adapters, batch):
    """PEFT's set_adapter turns requires_grad off on inactive adapters; use_adapter must not."""
    two_adapters.train()
    policy_loss = two_adapters(**batch).logits.float().pow(2).mean()
    with lora.use_adapter(two_adapters, "value"):
        value_loss = two_adapters(**batch).logits.float().pow(2).mean()
        with lora.reference(two_adapters):
            two_adapters(**batch)
    (policy_loss + value_loss).backward()
    for name in ("policy", "value"):
        grads = [p.grad for p in lora.adapter_parameters(two_adapters, name)]
        assert all(g is not None for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name
    base = [p for n, p in two_adapters.named_parameters() if "lora_" not in n]
    assert all(p.grad is None and not p.requires_grad for p in base)


def test_save_and_load_adapter_roundtrip(two_adapters, batch, tiny_model_dir, tmp_path):
    with lora.use_adapter(two_adapters, "value"):
        expected = _logits(two_adapters, batch)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("kept")
    folder = lora.save_adapter(two_adapters, "value", tmp_path / "run")
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "adapter_config.json").is_file()
    assert (folder / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "notes.txt",
    ]

    fresh = registry.load_model(str(tiny_model_dir), dtype="fp32")
    loaded = lora.load_adapter(fresh, folder, "value")
    assert isinstance(loaded, PeftModel)
    torch.testing.assert_close(_logits(loaded, batch), expected)
    assert list(lora.trainable_parameters(loaded, "value").values()) == []  # frozen by default

    again = lora.load_adapter(loaded, folder, "critic", trainable=True)
    assert lora.trainable_parameters(again, "critic")
    assert lora.active_adapter(again) == "value"
    with lora.use_adapter(again, "critic"):
        torch.testing.assert_close(_logits(again, batch), expected)


def test_plain_peft_loads_our_adapter(two_adapters, batch, tiny_model_dir, tmp_path):
    expected = _logits(two_adapters, batch)
    lora.save_adapter(two_adapters, "policy", tmp_path)
    fresh = registry.load_model(str(tiny_model_dir), dtype="fp32")
    peft_model = PeftModel.from_pretrained(fresh, str(tmp_path))
    torch.testing.assert_close(_logits(peft_model, batch), expected)


def test_load_adapter_refuses_pickle(tiny_model, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="safetensors only"):
        lora.load_adapter(tiny_model, tmp_path, "policy")


def test_run_dir_loads_as_a_model(two_adapters, batch, tiny_model_dir, tmp_path):
    """A run dir (adapter + alignkit_model.json) passed as a model name gives base + that adapter."""
    expected = _logits(two_adapters, batch)
    lora.save_adapter(two_adapters, "policy", tmp_path)
    registry.write_model_meta(tmp_path, base=str(tiny_model_dir), adapter="policy")
    model = registry.load_model(str(tmp_path), dtype="fp32")
    assert isinstance(model, PeftModel) and lora.active_adapter(model) == "policy"
    torch.testing.assert_close(_logits(model, batch), expected)
    assert registry.load_tokenizer(str(tmp_path)).pad_token == "<|endoftext|>"


def test_merge_adapter_gives_the_same_logits(two_adapters, batch):
    with lora.use_adapter(two_adapters, "value"):
        expected = _logits(two_adapters, batch)
    policy = _logits(two_adapters, batch)
    merged = lora.merge_adapter(two_adapters, "value")
    assert not isinstance(merged, PeftModel)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, batch), expected, rtol=1e-4, atol=1e-5)
    # the original keeps both adapters and its outputs
    assert lora.adapter_names(two_adapters) == ["policy", "value"]
    torch.testing.assert_close(_logits(two_adapters, batch), policy)


def test_backbone_hidden_states_match_the_full_model(two_adapters, batch):
    decoder = lora.backbone(two_adapters)
    assert type(decoder).__name__ == "LlamaModel"
    with torch.no_grad():
        full = two_adapters(**batch, output_hidden_states=True).hidden_states[-1]
        hidden = decoder(**batch).last_hidden_state
    torch.testing.assert_close(hidden, full)
    with lora.reference(two_adapters):
        base_hidden = decoder(**batch).last_hidden_state
    assert not torch.allclose(hidden, base_hidden, atol=1e-4)  # LoRA layers are inside the backbone


def test_backbone_of_a_plain_model(tiny_model_dir, batch):
    model = registry.load_model(str(tiny_model_dir), dtype="fp32")
    with torch.no_grad():
        full = model(**batch, output_hidden_states=True).hidden_states[-1]
        hidden = lora.backbone(model)(**batch).last_hidden_state
    torch.testing.assert_close(hidden, full)
    assert lora.backbone(lora.backbone(model)) is lora.backbone(model)


def _peft_forward(model):
    """Put PEFT's own forward back on every LoRA layer (undo `fuse_lora_layers`)."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if type(module) is Linear:
            module.__dict__.pop("forward", None)


def _forward_backward(model, batch, device: str, bf16: bool):
    """Both adapters' logits summed, and every gradient of their mean square (on the CPU, fp32)."""
    model.zero_grad()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        logits = model(**batch).logits
        with lora.use_adapter(model, "value"):
            logits = logits + model(**batch).logits
    (logits.float() ** 2).mean().backward()
    grads = {
        n: p.grad.to("cpu", torch.float32, copy=True)
        for n, p in model.named_parameters()
        if p.grad is not None
    }
    return logits.detach().to("cpu", torch.float32), grads


def _relative_error(x: torch.Tensor, reference: torch.Tensor) -> float:
    return ((x - reference).norm() / reference.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
def test_fused_lora_forward_matches_peft(two_adapters, batch, precision, device):
    """Logits and every gradient (both adapters' A and B) equal PEFT's separate scale-and-add forward.

    In fp32 the two agree to rounding. Under bf16 autocast they round at different places (the fused
    GEMM adds the LoRA term before its one rounding), so each is compared with PEFT's fp32 result: the
    fused forward must be no further from it than PEFT's own bf16 forward is, give or take a little.
    """
    from peft.tuners.lora.layer import Linear

    model = two_adapters.to(device)
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()
    layers = [m for m in model.modules() if type(m) is Linear]
    assert len(layers) == 2 * len(LLAMA_LINEAR) and all("forward" in m.__dict__ for m in layers)
    bf16 = precision != "fp32"
    fused_logits, fused_grads = _forward_backward(model, batch, device, bf16)
    _peft_forward(model)
    peft_logits, peft_grads = _forward_backward(model, batch, device, bf16)
    assert fused_grads.keys() == peft_grads.keys() and len(fused_grads) == 4 * 2 * len(LLAMA_LINEAR)
    if not bf16:
        torch.testing.assert_close(fused_logits, peft_logits, rtol=1e-5, atol=1e-5)
        for name, grad in fused_grads.items():
            scale = peft_grads[name].abs().max().item()
            torch.testing.assert_close(grad, peft_grads[name], rtol=1e-5, atol=1e-5 * max(scale, 1e-3))
        return
    ref_logits, ref_grads = _forward_backward(model, batch, device, bf16=False)
    names = sorted(ref_grads)  # all gradients as one vector: single small tensors are too noisy in bf16
    flat = [torch.cat([g[n].flatten() for n in names]) for g in (fused_grads, peft_grads, ref_grads)]
    for fused, peft, ref in [(fused_logits, peft_logits, ref_logits), flat]:
        assert _relative_error(fused, ref) <= 2 * _relative_error(peft, ref) + 0.01


def test_fused_lora_forward_falls_back_to_peft(two_adapters, batch, base_logits, monkeypatch):
    """Adapters off (the reference), merged weights and mixed dtypes outside autocast go to PEFT's forward."""
    from peft.tuners.lora.layer import Linear

    calls = []
    original = Linear.forward
    monkeypatch.setattr(Linear, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    with lora.reference(two_adapters) as ref:
        torch.testing.assert_close(_logits(ref, batch), base_logits)
    assert calls  # disabled adapters: PEFT's path, which returns the base layer's output
    calls.clear()
    _logits(two_adapters, batch)
    assert not calls  # the plain case is fused
    layer = next(m for m in two_adapters.modules() if type(m) is Linear)
    layer.lora_A["policy"].to(torch.float64)
    with pytest.raises(RuntimeError):  # PEFT's own forward decides what mixed dtypes do (here: an error)
        layer(torch.randn(2, layer.in_features))
    assert calls


def test_merged_for_inference_matches_and_restores(two_adapters, batch, base_logits):
    """Inside: the same logits as the adapter's forward, through one linear per layer; outside: the very
    same weight objects and forwards as before, so training continues on unchanged weights."""
    from peft.tuners.lora.layer import Linear

    layers = [m for m in two_adapters.modules() if type(m) is Linear]
    weights = [m.base_layer.weight for m in layers]
    forwards = [m.__dict__.get("forward") for m in layers]
    expected = _logits(two_adapters, batch)
    assert not torch.allclose(expected, base_logits)  # the policy adapter changes the outputs
    with merged_for_inference(two_adapters) as merged:
        assert merged == len(layers)
        assert all(m.base_layer.weight is not w for m, w in zip(layers, weights, strict=True))
        lora_a = layers[0].lora_A["policy"].weight
        calls = []
        hook = layers[0].lora_A["policy"].register_forward_hook(lambda *a: calls.append(1))
        got = _logits(two_adapters, batch)
        hook.remove()
        assert not calls  # the low-rank path did not run
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert all(m.base_layer.weight is w for m, w in zip(layers, weights, strict=True))
    assert [m.__dict__.get("forward") for m in layers] == forwards
    assert layers[0].lora_A["policy"].weight is lora_a
    torch.testing.assert_close(_logits(two_adapters, batch), expected, rtol=0, atol=0)
    with lora.use_adapter(two_adapters, "value") as model:  # the other adapter merges just as well
        value_logits = _logits(model, batch)
        with merged_for_inference(model) as merged:
            assert merged == len(layers)
            torch.testing.assert_close(_logits(model, batch), value_logits, rtol=1e-5, atol=1e-5)


def test_merged_for_inference_declines_what_it_cannot_merge(two_adapters, batch, base_logits):
    """Adapters off (the reference): nothing merged and the base model's outputs; an exception inside
    restores the weights."""
    from peft.tuners.lora.layer import Linear

    with lora.reference(two_adapters) as ref, merged_for_inference(ref) as merged:
        assert merged == 0
        torch.testing.assert_close(_logits(ref, batch), base_logits)
    layers = [m for m in two_adapters.modules() if type(m) is Linear]
    weights = [m.base_layer.weight for m in layers]
    with pytest.raises(ValueError), merged_for_inference(two_adapters):
        raise ValueError("inside")
    assert all(m.base_layer.weight is w for m, w in zip(layers, weights, strict=True))
