"""The online roles -- policy, reference, value, reward -- on as few copies of the weights as possible.

PPO has all four; the critic-free algorithms (GRPO, RLOO) have no value role (``build_models(cfg,
with_value=False)``): no value adapter, no value copy, and no value head among the trained weights.

With LoRA (the default) there is one frozen base model in memory and every role is a
view of it::

    policy     base + adapter "policy"    (trainable)  -> LM head over response positions
    value      base + adapter "value"     (trainable)  -> value head (fp32) on the hidden states
    reward     base + adapter "reward"    (frozen)     -> reward head at the last real token
    reference  base, adapters disabled    (frozen)     -> LM head; the SFT model is the reference

With ``--sft RUN`` (an adapter run) the SFT adapter is loaded twice: as "policy"
(trainable, so the policy starts as the SFT model) and as "sft" (frozen, the
reference). A reward model on another base, or a plain sequence classifier, loads
on its own (`alignkit.rewards.ensemble.load_reward_set`).

Without LoRA (``--no-lora``) the policy is a full trainable copy, the reference a
frozen copy (which also hosts a same-base reward adapter), and the value model a
third copy with its head. See docs/ppo.md for the memory arithmetic.

Every forward here takes the layout the sampler packs: ``ids`` (B, P + R) = left-padded
prompt then right-padded response, ``mask`` True on real tokens; positions are
``cumsum(mask) - 1`` so padding never shifts a row. Inputs are moved to the model's
device (`models.device.default_device` at load time) and results come back there. Hidden states are sliced to the
R positions that predict response tokens *before* the LM head (P - 1 ... P + R - 2):
prompt positions never pay for the (H x V) vocabulary projection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from alignkit import console
from alignkit.errors import ConfigError
from alignkit.losses.logits import logprobs_and_entropy
from alignkit.models import heads, lora, registry
from alignkit.models.device import Precision, autocast, default_device, resolve_precision
from alignkit.trainers.online.config import OnlineConfig

POLICY, VALUE, SFT = "policy", "value", "sft"


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout probability in ``model`` to 0 (nn.Dropout modules and attention dropout); return the count.

    PPO's ratio π/π_old must compare the same deterministic function (Huang et al. 2024,
    "disable dropout"; TRL's ``disable_dropout_in_model``).
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            module.p = 0.0
            changed += 1
        if isinstance(getattr(module, "attention_dropout", None), float) and module.attention_dropout > 0:
            module.attention_dropout = 0.0
            changed += 1
    config = getattr(model, "config", None)
    for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout"):
        if isinstance(getattr(config, key, None), float):
            setattr(config, key, 0.0)
    return changed


def positions_of(mask: Tensor) -> Tensor:
    """(B, T) position ids counting real tokens only: ``cumsum(mask) - 1``, clamped at 0 on left padding."""
    return (mask.long().cumsum(-1) - 1).clamp_(min=0)


@dataclass
class PPOModels:
    """The policy, reference, value and reward roles (see the module docstring)."""

    policy: nn.Module  # LoRA: the PeftModel holding every adapter; full: the trainable causal LM
    tokenizer: Any
    precision: Precision
    value_head: heads.ScalarHead
    base_name: str
    lora: bool
    reference_model: nn.Module | None = None  # full fine-tuning only
    value_model: nn.Module | None = None  # full fine-tuning only
    reference_adapter: str | None = None  # "sft" when the reference is base + SFT adapter
    notes: list[str] = field(default_factory=list)
    gradient_checkpointing: bool = False
    has_value: bool = True  # False for the critic-free algorithms: no value adapter, model or trained head
    _tuner_layers: list[nn.Module] | None = None  # LoRA layers, found once (adapters only change by loading)

    @property
    def device(self) -> torch.device:
        """Where every role's weights (and the rollout's tensors) live."""
        return next(self.policy.parameters()).device

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """The update's forward passes: train mode only where gradient checkpointing needs it.

        transformers checkpoints decoder layers only in train mode; dropout is 0 everywhere
        (``disable_dropout``), so train mode changes nothing else.
        """
        modules = [m for m in (self.policy, self.value_model) if m is not None]
        if self.gradient_checkpointing:
            for m in modules:
                m.train()
        try:
            yield
        finally:
            for m in modules:
                m.eval()

    # ----------------------------------------------------------------------------- contexts
    @contextlib.contextmanager
    def as_policy(self) -> Iterator[nn.Module]:
        """The policy model, ready for a forward pass (or for the sampler)."""
        if self.lora:
            with lora.use_adapter(self.policy, POLICY) as model:
                yield model
        else:
            yield self.policy

    @contextlib.contextmanager
    def as_reference(self) -> Iterator[nn.Module]:
        """The frozen reference policy under no_grad."""
        if not self.lora:
            assert self.reference_model is not None
            with torch.no_grad(), _plain_reference(self.reference_model) as model:
                yield model
        elif self.reference_adapter is not None:
            with torch.no_grad(), lora.use_adapter(self.policy, self.reference_adapter) as model:
                yield model
        else:
            with lora.reference(self.policy) as model:
                yield model

    @contextlib.contextmanager
    def as_value(self) -> Iterator[nn.Module]:
        if self.lora:
            with lora.use_adapter(self.policy, VALUE) as model:
                yield model
        else:
            assert self.value_model is not None
            yield self.value_model

    # ----------------------------------------------------------------------------- forwards
    @contextlib.contextmanager
    def _no_lora_upcast(self) -> Iterator[None]:
        """Under bf16 autocast, stop PEFT from copying each LoRA input to fp32 first.

        Autocast runs the LoRA matmuls in bf16 anyway, so the bf16 -> fp32 -> bf16 round trip is
        exact and only costs memory: one fp32 copy of the layer input saved per LoRA module for the
        backward pass (7 per decoder layer).
        """
        if self._tuner_layers is None:
            self._tuner_layers = (
                [m for m in self.policy.modules() if isinstance(m, BaseTunerLayer)] if self.lora else []
            )
        layers = self._tuner_layers
        if self.precision.autocast_dtype is None or not layers:
            yield
            return
        saved = [m.cast_input_dtype_enabled for m in layers]
        for m in layers:
            m.cast_input_dtype_enabled = False
        try:
            yield
        finally:
            for m, flag in zip(layers, saved, strict=True):
                m.cast_input_dtype_enabled = flag

    def _hidden(self, model: nn.Module, ids: Tensor, mask: Tensor, response_len: int) -> Tensor:
        """Hidden states (B, R, H) at the R positions that predict the response tokens."""
        device = next(model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        with autocast(self.precision, device.type), self._no_lora_upcast():
            out = lora.backbone(model)(
                input_ids=ids, attention_mask=mask.long(), position_ids=positions_of(mask), use_cache=False
            )
        prompt_len = ids.shape[1] - response_len
        # position P - 1 + t predicts response token t; contiguous for the value head
        return out.last_hidden_state[:, prompt_len - 1 : prompt_len - 1 + response_len].contiguous()

    def _logits(self, model: nn.Module, ids: Tensor, mask: Tensor, response_len: int) -> Tensor:
        """Logits (B, R, V) at the R positions that predict the response tokens, from the model's own forward.

        The forward applies whatever the model puts after its LM head (Granite divides by ``logits_scaling``,
        Cohere multiplies by ``logit_scale``, Gemma 2 soft-caps), so these are the logits the sampler drew
        from. ``logits_to_keep`` as an index tensor slices the hidden states before the head: prompt positions
        never pay for the vocabulary projection, and the slice is a contiguous copy (the LM head's matmul on a
        strided slice is ~18x slower on CPU: 0.35 s vs 0.02 s for 8 x 32 rows of SmolLM2).
        """
        device = next(model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        start = ids.shape[1] - response_len - 1  # position P - 1 + t predicts response token t
        keep = torch.arange(start, start + response_len, device=device)
        with autocast(self.precision, device.type), self._no_lora_upcast():
            logits = model(
                input_ids=ids,
                attention_mask=mask.long(),
                position_ids=positions_of(mask),
                use_cache=False,
                logits_to_keep=keep,
            ).logits
        if logits.shape[1] != response_len:  # a model that ignores logits_to_keep returns every position
            logits = logits[:, start : start + response_len]
        return logits  # (B, R, V)

    def token_logps(
        self,
        model: nn.Module,
        ids: Tensor,
        mask: Tensor,
        response_ids: Tensor,
        temperature: float,
        with_entropy: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """log π(y_t | x, y_<t) / τ-tempered, (B, R) fp32, and optionally the entropy (B, R) (no grad).

        Runs under the caller's grad mode; ``model`` comes from :meth:`as_policy` or :meth:`as_reference`.
        """
        logits = self._logits(model, ids, mask, response_ids.shape[1])  # (B, R, V)
        flat_logps, flat_entropy = logprobs_and_entropy(
            logits.reshape(-1, logits.shape[-1]),
            response_ids.to(logits.device).reshape(-1),
            temperature,
            with_entropy,
        )  # one float32 pass per chunk of (b, t) rows for both
        shape = response_ids.shape
        return flat_logps.view(shape), flat_entropy.view(shape) if flat_entropy is not None else None

    def values(self, model: nn.Module, ids: Tensor, mask: Tensor, response_len: int) -> Tensor:
        """V(s_t) for each response position t, (B, R) fp32; s_t = prompt + the first t response tokens."""
        return self.value_head(self._hidden(model, ids, mask, response_len))

    # ----------------------------------------------------------------------------- parameters
    def trainable(self) -> dict[str, nn.Parameter]:
        """Name -> parameter of everything the run trains: policy (+ value) weights and the value head."""
        params: dict[str, nn.Parameter] = {}
        if self.lora:
            for name, p in self.policy.named_parameters():
                if p.requires_grad:
                    params[f"model.{name}"] = p
        else:
            params.update({f"policy.{n}": p for n, p in self.policy.named_parameters() if p.requires_grad})
            if self.value_model is not None:
                params.update(
                    {f"value.{n}": p for n, p in self.value_model.named_parameters() if p.requires_grad}
                )
        if self.has_value:
            params.update({f"value_head.{n}": p for n, p in self.value_head.named_parameters()})
        return params

    def parameter_bytes(self) -> dict[str, int]:
        """Bytes of weights held in memory, by role, for the report (shared tensors counted once)."""
        seen: set[int] = set()

        def size(module: nn.Module | None) -> int:
            total = 0
            for p in module.parameters() if module is not None else []:
                if p.data_ptr() not in seen:
                    seen.add(p.data_ptr())
                    total += p.numel() * p.element_size()
            return total

        out = {"policy_and_shared": size(self.policy), "value_head": size(self.value_head)}
        if not self.lora:
            out["reference"] = size(self.reference_model)
            out["value"] = size(self.value_model)
        return out


@contextlib.contextmanager
def _plain_reference(model: nn.Module) -> Iterator[nn.Module]:
    """A full-fine-tuning reference that may host reward adapters: run it with adapters disabled."""
    if lora.adapter_names(model):
        with lora.reference(model) as m:
            yield m
    else:
        yield model


# --------------------------------------------------------------------------------------------- building


def _starting_point(cfg: OnlineConfig) -> tuple[str, Path | None]:
    """(base model name, SFT adapter dir or None) from --model / --policy / --sft."""
    start = cfg.sft or cfg.policy
    if start is None:
        return cfg.model, None
    path = Path(start)
    if registry.is_adapter_dir(path):
        return registry.adapter_base(path), path
    if cfg.sft is not None:
        raise ConfigError(
            f"--sft {cfg.sft}: not an adapter run (no adapter_config.json); a full checkpoint is a --policy"
        )
    return start, None


def build_models(cfg: OnlineConfig, with_value: bool = True) -> PPOModels:
    """Load the base once and set up the roles for ``cfg`` (LoRA or full fine-tuning), on `default_device`.

    ``with_value`` False (GRPO, RLOO): no value adapter or value model.
    """
    device = default_device()
    precision = resolve_precision(cfg.dtype, lora=cfg.lora, device=device)
    base_name, sft_dir = _starting_point(cfg)
    tokenizer = registry.load_tokenizer(
        base_name, padding_side="left", trust_remote_code=cfg.trust_remote_code
    )
    base = registry.load_model(
        base_name,
        dtype=precision.frozen_dtype,
        trust_remote_code=cfg.trust_remote_code,
        device=device,
        tokenizer=tokenizer,
    )
    notes: list[str] = []
    if cfg.disable_dropout:
        disable_dropout(base)
    hidden_size = base.config.hidden_size
    settings = lora.LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    if cfg.lora:
        if sft_dir is not None:
            model = lora.load_adapter(base, sft_dir, POLICY, trainable=True)
            lora.load_adapter(model, sft_dir, SFT, trainable=False)
            notes.append(
                f"policy starts from the SFT adapter {sft_dir}; reference = base + that adapter (frozen)"
            )
        else:
            model = lora.add_adapter(base, POLICY, settings, trainable=True)
        if with_value:
            lora.add_adapter(model, VALUE, settings, trainable=True)
        if cfg.disable_dropout:
            disable_dropout(model)
        model.eval()  # dropout is off; eval mode also keeps it off if a config re-enables it
        value_head = heads.ScalarHead(hidden_size, init="value").to(device)
        models = PPOModels(
            model, tokenizer, precision, value_head, base_name, True,
            reference_adapter=SFT if sft_dir is not None else None, notes=notes, has_value=with_value,
        )  # fmt: skip
        _enable_checkpointing(models, cfg.gradient_checkpointing)
        _cpu_attention(models, cfg, device)
        return models
    # full fine-tuning: merge an SFT adapter into the weights first, then copy
    if sft_dir is not None:
        base = lora.merge_adapter(lora.load_adapter(base, sft_dir, SFT, trainable=False), SFT)
        notes.append(f"SFT adapter {sft_dir} merged into the base; policy and reference start from it")
    reference = lora.frozen_copy(base)
    if precision.autocast_dtype is not None:  # a frozen copy needs no fp32 master weights
        reference.to(precision.autocast_dtype)
    value_model = lora.frozen_copy(base) if with_value else None
    if value_model is not None:
        value_model.requires_grad_(True)
        value_model.eval()
    base.requires_grad_(True)
    base.eval()
    value_head = heads.ScalarHead(hidden_size, init="value").to(device)
    models = PPOModels(
        base, tokenizer, precision, value_head, base_name, False,
        reference_model=reference, value_model=value_model, notes=notes, has_value=with_value,
    )  # fmt: skip
    _enable_checkpointing(models, cfg.gradient_checkpointing)
    _cpu_attention(models, cfg, device)
    return models


def _cpu_attention(models: PPOModels, cfg: OnlineConfig, device: Any) -> None:
    """--cpu-attention in bf16 on a CPU: the forwards of every role use `models.cpu_attention`'s kernel (the
    sampler switches to its own decode attention and back)."""
    from alignkit.models.cpu_attention import enable_for_training

    roles = [models.policy, models.reference_model, models.value_model]
    if enable_for_training(
        roles, getattr(cfg, "cpu_attention", False), models.precision.autocast_dtype, device
    ):
        models.notes.append("attention: alignkit's bf16 CPU kernel (--no-cpu-attention keeps SDPA)")


def _enable_checkpointing(models: PPOModels, enabled: bool) -> None:
    """Non-reentrant activation checkpointing (works with a frozen base: no input grads needed)."""
    if not enabled:
        return
    for m in (models.policy, models.value_model):
        if m is None:
            continue
        base = m.get_base_model() if hasattr(m, "get_base_model") else m
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    models.gradient_checkpointing = True


def init_value_from_reward(models: PPOModels, reward_dir: Path) -> bool:
    """Start the value adapter and head from a same-base `alignkit rm` reward model (Huang et al. 2024).

    Replaces the fresh "value" adapter by a trainable copy of the reward adapter and copies the
    reward head's weights into the value head. Returns False (and changes nothing) when the
    reward model is not a same-base LoRA one or the run is not a LoRA run.
    """
    from alignkit.rewards.model import KIND, reward_model_dir

    folder = reward_model_dir(reward_dir)
    meta = registry.read_model_meta(folder)
    if not models.lora or meta.get("kind") != KIND or not meta.get("adapter"):
        return False
    model = models.policy
    model.delete_adapter(VALUE)
    lora.load_adapter(model, folder, VALUE, trainable=True)
    reward_head = heads.load_head(folder, KIND, hidden_size=models.value_head.hidden_size)
    with torch.no_grad():
        models.value_head.score.weight.copy_(reward_head.score.weight)
    return True


def save_policy(run: Any, models: PPOModels, cfg: OnlineConfig, trainer: str) -> None:
    """The trained policy in the run dir, loadable as a model by every command (sample, eval, plot, export)."""
    if models.lora:
        lora.save_adapter(models.policy, "policy", run.path)
        registry.write_model_meta(
            run.path, base=models.base_name, adapter="policy", kind="policy", trainer=trainer
        )
        if cfg.merge:
            merged = lora.merge_adapter(models.policy, "policy")
            merged.save_pretrained(str(run.path / "merged"), safe_serialization=True)
            models.tokenizer.save_pretrained(str(run.path / "merged"))
    else:
        models.policy.save_pretrained(str(run.path / "policy"), safe_serialization=True)
        models.tokenizer.save_pretrained(str(run.path / "policy"))
    models.tokenizer.save_pretrained(str(run.path))


def print_roles(models: PPOModels, reward_members: list[Any]) -> None:
    functions = [m.name for m in reward_members if hasattr(m.scorer, "score_text")]
    models_ = [m for m in reward_members if not hasattr(m.scorer, "score_text")]
    shared = [m.name for m in models_ if getattr(m.scorer, "shared", False)]
    own = [m.name for m in models_ if not getattr(m.scorer, "shared", False)]
    if models.lora:
        names = ", ".join(lora.adapter_names(models.policy))
        console.info(f"one base model ({models.base_name}) with adapters: {names}; reference = adapters off")
    if shared:
        console.info(f"reward model(s) on the shared base: {', '.join(shared)}")
    if own:
        console.info(f"reward model(s) loaded separately (another base or a full model): {', '.join(own)}")
    if functions:
        console.info(f"reward function(s): {', '.join(functions)}")
    for note in models.notes:
        console.info(note)
