"""Tiny saved models for tests: a random LoRA reward model and a random LoRA policy run dir, as alignkit saves them.

Imported as ``from factories import ...`` (tests/conftest.py puts this folder on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def compiler_missing() -> str | None:
    """Why torch.compile cannot run on this machine's CPU (a sentence), or None."""
    from alignkit.models.compile import compile_unavailable

    return compile_unavailable(torch.device("cpu"))


needs_compiler = pytest.mark.skipif(compiler_missing() is not None, reason=f"{compiler_missing()}")


def make_reward_model(folder: Path, base_dir: Path, seed: int = 1, tokenizer=None) -> Path:
    """Save a random LoRA reward model on ``base_dir`` in the `alignkit rm` layout (adapter + head)."""
    from alignkit.models import heads, lora, registry
    from alignkit.models.device import resolve_precision
    from alignkit.rewards.model import RewardModel

    torch.manual_seed(seed)
    tok = tokenizer or registry.load_tokenizer(str(base_dir), padding_side="right")
    base = registry.load_model(str(base_dir), dtype="fp32", tokenizer=tok)
    model = lora.add_adapter(base, "reward", lora.LoraSettings(r=4, alpha=8))
    with torch.no_grad():  # a non-zero adapter, so "reward adapter unchanged" means something
        for p in lora.adapter_parameters(model, "reward"):
            p.normal_(0, 0.05)
    head = heads.ScalarHead(base.config.hidden_size, init="reward")
    rm = RewardModel(model, head, tok, resolve_precision("fp32", lora=True), 256, adapter="reward")
    rm.save(folder, base=str(base_dir))
    return folder


def make_policy(folder: Path, base_dir: Path, scale: float = 0.05) -> Path:
    """A LoRA policy run dir: a random adapter of size ``scale`` (0: identical to the base)."""
    from alignkit.models import lora, registry

    torch.manual_seed(3)
    tok = registry.load_tokenizer(str(base_dir))
    model = lora.add_adapter(
        registry.load_model(str(base_dir), dtype="fp32", tokenizer=tok),
        "default",
        lora.LoraSettings(r=4, alpha=8),
    )
    with torch.no_grad():
        for p in lora.adapter_parameters(model, "default"):
            p.normal_(0, scale) if scale else p.zero_()
    lora.save_adapter(model, "default", folder)
    registry.write_model_meta(folder, base=str(base_dir))
    tok.save_pretrained(str(folder))
    return folder
