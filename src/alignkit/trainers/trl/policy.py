"""The model a TRL-backed trainer trains, and its reference: loaded from our registry, LoRA as PEFT config.

- `load_policy`: model and tokenizer (``--model``: a name, a checkpoint dir or an adapter/run dir), with
  `peft_config` for a fresh LoRA adapter (so TRL takes the reference from the same weights with the adapter
  disabled: no second copy);
- `load_reference`: the separate frozen ``--ref-model``, whose tokenizer must match (`check_same_tokenizer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.config import TrainConfig
from alignkit.errors import ModelError
from alignkit.models.device import Precision


@dataclass
class Policy:
    """The model TRL trains, its tokenizer, and how the run's output relates to a base model."""

    model: Any  # PreTrainedModel, or a PeftModel when --model is an adapter dir (its adapter keeps training)
    tokenizer: Any
    base_name: str  # what alignkit_model.json records as the base (a registry name or path)
    peft_config: Any | None  # LoraConfig handed to TRL (fresh adapter), else None
    note: str  # one line for the console: what is trained and what the reference is


def peft_config(model: Any, cfg: TrainConfig):
    """A PEFT LoRA config for TRL from the common options (``all-linear`` targets, never the LM head)."""
    from peft import LoraConfig

    from alignkit.models.lora import resolve_target_modules

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=resolve_target_modules(model, "all-linear"),
        bias="none",  # a trained bias would make "adapter disabled" differ from the base model
        task_type="CAUSAL_LM",
    )


def load_policy(cfg: TrainConfig, precision: Precision) -> Policy:
    """Model and tokenizer from the registry (``--model``: name, checkpoint dir or an adapter/run dir).

    LoRA on a base model: a fresh adapter via ``peft_config`` (TRL's reference = adapter disabled). LoRA on an
    adapter dir: that adapter keeps training (as "default"); TRL keeps a frozen copy of it ("ref") as the
    reference, so the reference is the model you started from. Without LoRA every weight trains.
    """
    from alignkit.models import lora, registry

    path = registry.resolve(cfg.model)
    tokenizer = registry.load_tokenizer(
        cfg.model, padding_side="left", trust_remote_code=cfg.trust_remote_code
    )
    if registry.is_adapter_dir(path):
        base_name = registry.adapter_base(path)
        base = registry.load_model(
            base_name, precision.frozen_dtype, cfg.trust_remote_code, tokenizer=tokenizer
        )
        if cfg.lora:
            model = lora.load_adapter(base, path, "default", trainable=True)
            return Policy(
                model,
                tokenizer,
                base_name,
                None,
                f"continuing the LoRA adapter of {cfg.model}; reference: a frozen copy of it",
            )
        merged = lora.load_adapter(base, path, "default").merge_and_unload()
        merged.requires_grad_(True)
        merged.train()
        return Policy(merged, tokenizer, str(cfg.model), None, f"all weights of {cfg.model} (adapter merged)")
    model = registry.load_model(
        path, precision.frozen_dtype, cfg.trust_remote_code, for_training=not cfg.lora, tokenizer=tokenizer
    )
    if cfg.lora:
        return Policy(
            model,
            tokenizer,
            str(cfg.model),
            peft_config(model, cfg),
            f"LoRA r={cfg.lora_r} on {cfg.model}; reference: the same weights with the adapter disabled",
        )
    return Policy(model, tokenizer, str(cfg.model), None, f"all weights of {cfg.model}")


def check_same_tokenizer(policy_tok: Any, ref_tok: Any, ref_name: str) -> None:
    """Raise ModelError unless the two tokenizers map text to the same ids (log-ratios need one vocabulary)."""
    probe = "Hello, world! 1234 \u00e9\u00e8 <|im_start|>user\n?"
    same = (
        policy_tok.get_vocab() == ref_tok.get_vocab()
        and policy_tok.eos_token_id == ref_tok.eos_token_id
        and policy_tok(probe, add_special_tokens=False)["input_ids"]
        == ref_tok(probe, add_special_tokens=False)["input_ids"]
    )
    if not same:
        raise ModelError(
            f"--ref-model {ref_name} has a different tokenizer from --model: log-ratios log pi(y|x) - log "
            "pi_ref(y|x) need the same tokens; pick a reference from the same model family"
        )


def load_reference(cfg: TrainConfig, ref_name: str | None, precision: Precision, tokenizer: Any) -> Any:
    """The separate frozen reference for ``--ref-model`` (its tokenizer must match), else None."""
    if not ref_name:
        return None
    from alignkit.models import registry

    ref_tok = registry.load_tokenizer(ref_name, trust_remote_code=cfg.trust_remote_code)
    check_same_tokenizer(tokenizer, ref_tok, ref_name)
    return registry.load_model(ref_name, precision.frozen_dtype, cfg.trust_remote_code, tokenizer=ref_tok)
