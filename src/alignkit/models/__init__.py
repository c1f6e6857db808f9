"""Loading models: names → checkpoints (registry), LoRA adapters (lora), scalar heads (heads).

This package is the only place that loads tokenizers and models; trainers, the sampler, the judge and
evaluation go through it.
"""

from __future__ import annotations

from alignkit.models.heads import (
    ScalarHead,
    export_sequence_classifier,
    last_token_index,
    load_head,
    save_head,
    score_last_token,
)
from alignkit.models.lora import (
    LoraSettings,
    active_adapter,
    adapter_names,
    adapter_parameters,
    add_adapter,
    backbone,
    frozen_copy,
    load_adapter,
    merge_adapter,
    reference,
    save_adapter,
    trainable_parameters,
    use_adapter,
)
from alignkit.models.registry import (
    DEFAULT_MODEL,
    adapter_base,
    cache_dir,
    cpu_has_bf16,
    embedded_gguf,
    is_default,
    list_models,
    load_model,
    load_tokenizer,
    prepare_default,
    read_model_meta,
    resolve,
    resolve_dtype,
    write_model_meta,
)

__all__ = [
    "DEFAULT_MODEL",
    "LoraSettings",
    "ScalarHead",
    "active_adapter",
    "adapter_base",
    "adapter_names",
    "adapter_parameters",
    "add_adapter",
    "backbone",
    "cache_dir",
    "cpu_has_bf16",
    "embedded_gguf",
    "export_sequence_classifier",
    "frozen_copy",
    "is_default",
    "last_token_index",
    "list_models",
    "load_adapter",
    "load_head",
    "load_model",
    "load_tokenizer",
    "merge_adapter",
    "prepare_default",
    "read_model_meta",
    "reference",
    "resolve",
    "resolve_dtype",
    "save_adapter",
    "save_head",
    "score_last_token",
    "trainable_parameters",
    "use_adapter",
    "write_model_meta",
]
