"""Merging a run's LoRA adapter into its base: a standalone checkpoint that plain transformers loads."""

from __future__ import annotations

import os
from pathlib import Path

from alignkit.errors import ModelError
from alignkit.files import atomic_dir, atomic_write_json
from alignkit.models import lora, registry


def merge_adapter_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "fp32") -> Path:
    """Merge the LoRA adapter of a run (dpo, kto, sft, ppo: any policy adapter dir) into a standalone HF checkpoint.

    The base named in ``alignkit_model.json`` is loaded in ``dtype`` (fp32 by default, so the merge
    ``W0 + alpha/r * B A`` is not rounded to bf16), the adapter attached and merged, and the result written
    with safetensors and the tokenizer, atomically; plain ``AutoModelForCausalLM.from_pretrained(out_dir)``
    loads it. Reward-model runs (a ``reward_model/`` dir) are exported by the rm trainer instead.
    """
    folder = Path(run_dir)
    if (folder / "reward_model").is_dir():
        raise ModelError(
            f"{folder} is a reward-model run: export it with the rm trainer's export (alignkit export)"
        )
    if not registry.is_adapter_dir(folder):
        raise ModelError(f"{folder} holds no LoRA adapter (adapter_config.json): nothing to merge")
    meta = registry.read_model_meta(folder)
    base_name = registry.adapter_base(folder)
    adapter = str(meta.get("adapter") or "default")
    tokenizer = registry.load_tokenizer(base_name)
    base = registry.load_model(base_name, dtype, tokenizer=tokenizer)
    peft_model = lora.load_adapter(base, folder, adapter)
    merged = peft_model.merge_and_unload()
    merged.eval()

    def build(tmp: Path) -> None:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(
            tmp / registry.MODEL_META_FILE,
            {
                "base": base_name,
                "adapter": "",
                "kind": meta.get("kind", "policy"),
                "merged_from": str(folder.resolve()),
                "format": "merged",
            },
        )

    return atomic_dir(Path(out_dir), build)
