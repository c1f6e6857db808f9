"""Several named LoRA adapters on one frozen base model (PEFT-based).

LoRA (Hu et al. 2021, arXiv:2106.09685, eq. 3) adds a low-rank update to each targeted weight:
``h = W0 x + (alpha / r) * B A x`` with ``A`` (r, d_in), ``B`` (d_out, r), ``B`` initialised to zero, so an
untrained adapter is the identity. With PPO the policy, value and reward models are adapters on one base, and
the reference policy is the base itself with the adapters switched off (:func:`reference`): one copy of the
weights in memory instead of four.

Trainability is a property of each adapter, fixed when it is added or loaded (``trainable=``), not of which
adapter is active. PEFT's own ``set_adapter`` / ``disable_adapter`` flip ``requires_grad`` on every adapter
(active → True, others → False), and autograd then silently drops gradients for parameters whose flag was
turned off before ``backward()``. :func:`use_adapter` and :func:`reference` therefore switch adapters and put
every ``requires_grad`` flag back as it was, so a loss built from two adapters (policy + value) trains both.

Speed: every LoRA linear layer alignkit adds or loads runs :func:`fused_lora_forward`, which computes
``W0 x + (alpha / r) B A x`` as one ``addmm`` (the scaling as its ``alpha``, the sum in the GEMM's output)
instead of PEFT's separate scale and add over the whole (tokens, d_out) output; cases it does not cover go
to PEFT's own forward.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from alignkit.errors import ConfigError, ModelError

ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
# Output layers that must never get LoRA: the LM head (tied to the embeddings in SmolLM2) and score heads.
_NEVER_TARGET = frozenset({"lm_head", "score", "v_head", "classifier", "embed_out", "output"})


@dataclass
class LoraSettings:
    """How to build one LoRA adapter."""

    r: int = 16
    """Rank of the update ``B A`` (number of columns of ``B``)."""
    alpha: float = 32
    """The update is scaled by ``alpha / r`` (Hu et al. 2021, section 4.1); alpha=2r keeps the scale at 2."""
    dropout: float = 0.0
    """Dropout on the adapter's input path; 0 keeps policy log-probs deterministic (PPO ratios need that)."""
    target_modules: str | Sequence[str] = "all-linear"
    """``"all-linear"``: every linear layer inside the decoder blocks (llama: q/k/v/o/gate/up/down projections),
    never ``lm_head``; or explicit module-name suffixes such as ``["q_proj", "v_proj"]``."""

    def __post_init__(self) -> None:
        if int(self.r) < 1:
            raise ConfigError(f"lora r must be a positive integer, not {self.r!r}")
        if not self.alpha > 0:
            raise ConfigError(f"lora alpha must be > 0, not {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout must be in [0, 1), not {self.dropout!r}")


# ----------------------------------------------------------------------------------------------- helpers


def _as_peft(model: nn.Module, what: str) -> PeftModel:
    if not isinstance(model, PeftModel):
        raise ModelError(f"{what} needs a model with LoRA adapters (a PeftModel); add one with add_adapter()")
    return model


def _check_adapter(model: PeftModel, name: str) -> None:
    if name not in model.peft_config:
        have = ", ".join(sorted(model.peft_config)) or "none"
        raise ModelError(f"no adapter named {name!r} on this model (adapters: {have})")


def _check_new_name(name: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum() or name.startswith("lora"):
        raise ConfigError(
            f"adapter name {name!r} must be letters, digits, '_' or '-' (like 'policy', 'value', 'reward') and must "
            f"not start with 'lora'"
        )


def _tuner_layers(model: nn.Module) -> Iterator[BaseTunerLayer]:
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            yield module


def adapter_names(model: nn.Module) -> list[str]:
    """Names of the adapters on ``model`` (empty for a plain model)."""
    return list(model.peft_config) if isinstance(model, PeftModel) else []


def active_adapter(model: nn.Module) -> str | None:
    """The adapter that forward passes use, or None for a plain model."""
    return model.active_adapter if isinstance(model, PeftModel) else None


def adapter_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Every parameter of adapter ``name`` (its lora_A / lora_B matrices), whatever their ``requires_grad``."""
    params: list[nn.Parameter] = []
    for layer in _tuner_layers(model):
        for attr in layer.adapter_layer_names:
            container = getattr(layer, attr)
            if name in container:
                item = container[name]
                params.extend(item.parameters() if isinstance(item, nn.Module) else [item])
    return params


def trainable_parameters(model: nn.Module, adapter: str | None = None) -> dict[str, nn.Parameter]:
    """Name -> parameter to hand to an optimiser (``model.named_parameters()`` order): every parameter that
    requires grad, or only those of ``adapter``."""
    if adapter is None:
        return {n: p for n, p in model.named_parameters() if p.requires_grad}
    _check_adapter(_as_peft(model, "trainable_parameters"), adapter)
    own = {id(p) for p in adapter_parameters(model, adapter)}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) in own}


def _grad_flags(model: nn.Module) -> list[tuple[nn.Parameter, bool]]:
    return [(p, p.requires_grad) for p in model.parameters()]


def _restore_grad_flags(flags: list[tuple[nn.Parameter, bool]]) -> None:
    for param, flag in flags:
        param.requires_grad_(flag)


def _set_active(model: PeftModel, name: str) -> None:
    """Make ``name`` the active adapter without touching any ``requires_grad`` flag (see module docstring)."""
    flags = _grad_flags(model)
    model.set_adapter(name)
    _restore_grad_flags(flags)


def _set_trainable(model: nn.Module, name: str, trainable: bool) -> None:
    for param in adapter_parameters(model, name):
        param.requires_grad_(trainable)


def resolve_target_modules(model: nn.Module, target: str | Sequence[str] = "all-linear") -> list[str]:
    """Module-name suffixes LoRA should wrap (sorted), for ``"all-linear"`` or an explicit list.

    ``"all-linear"`` collects the linear layers of the base model (modules already wrapped by LoRA count by
    their own name) except output layers (``lm_head``, ``score``, ... and the output embeddings). An explicit
    list is checked against the model so a typo fails here, not silently in PEFT.
    """
    from transformers.pytorch_utils import Conv1D

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    output = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    found: set[str] = set()
    for qualified, module in base.named_modules():
        suffix = qualified.rsplit(".", 1)[-1]
        inside_lora = ".lora_" in f".{qualified}" or suffix == "base_layer" or ".base_layer." in qualified
        plain_linear = isinstance(module, (nn.Linear, Conv1D)) and not inside_lora and module is not output
        if plain_linear or isinstance(module, BaseTunerLayer):  # a wrapped layer counts by its own name
            found.add(suffix)
    found -= _NEVER_TARGET
    if isinstance(target, str):
        if target != "all-linear":
            target = [target]
        else:
            if not found:
                raise ModelError(f"no linear layers to put LoRA on in {type(base).__name__}")
            return sorted(found)
    wanted = [str(t) for t in target]
    missing = [t for t in wanted if t not in found]
    if missing or not wanted:
        raise ConfigError(
            f"lora target_modules {missing or wanted} not found in {type(base).__name__}; "
            f"its linear layers are: {', '.join(sorted(found))} (or use 'all-linear')"
        )
    return sorted(wanted)


# ------------------------------------------------------------------------------------- add / save / load


def add_adapter(
    model: nn.Module, name: str, settings: LoraSettings | None = None, trainable: bool = True
) -> PeftModel:
    """Add a fresh LoRA adapter ``name``; return the PeftModel (wrapping ``model`` on the first call).

    Base weights are frozen. The first adapter becomes the active one; later ones are added inactive (switch
    with :func:`use_adapter`). ``trainable`` sets the new adapter's ``requires_grad``; other adapters keep theirs.
    Adapter weights are kept in fp32 even on a bf16 base (PEFT's autocast_adapter_dtype).
    """
    settings = settings or LoraSettings()
    _check_new_name(name)
    config = LoraConfig(
        r=int(settings.r),
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=resolve_target_modules(model, settings.target_modules),
        bias="none",  # a trained bias would make "adapter disabled" differ from the base model
        task_type="CAUSAL_LM" if hasattr(model, "generate") else None,
    )
    if isinstance(model, PeftModel):
        if name in model.peft_config:
            raise ModelError(f"adapter {name!r} already exists on this model; pick another name")
        flags = _grad_flags(model)
        model.add_adapter(name, config)
        _restore_grad_flags(flags)
        peft_model = model
    else:
        peft_model = get_peft_model(model, config, adapter_name=name)
        for param in peft_model.parameters():  # base frozen; only adapters train
            param.requires_grad_(False)
    _set_trainable(peft_model, name, trainable)
    fuse_lora_layers(peft_model)
    return peft_model


def save_adapter(model: nn.Module, name: str, path: str | os.PathLike) -> Path:
    """Write adapter ``name`` to ``path`` in PEFT's layout (adapter_config.json + adapter_model.safetensors).

    Plain ``peft.PeftModel.from_pretrained(base, path)`` loads it. Other files in ``path`` are left alone; each
    of the two files is replaced atomically (weights first, config last).
    """
    peft_model = _as_peft(model, "save_adapter")
    _check_adapter(peft_model, name)
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".adapter.tmp.", dir=target))
    try:
        peft_model.save_pretrained(str(work), selected_adapters=[name], safe_serialization=True)
        written = work if name == "default" else work / name  # PEFT puts non-default adapters in a subdir
        for filename in (ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE):
            if not (written / filename).is_file():
                raise ModelError(f"PEFT did not write {filename} for adapter {name!r}")
            os.replace(written / filename, target / filename)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def load_adapter(model: nn.Module, path: str | os.PathLike, name: str, trainable: bool = False) -> PeftModel:
    """Load the adapter saved in ``path`` under ``name``; return the PeftModel (wrapping a plain model).

    Only safetensors weights are read. A loaded adapter is frozen unless ``trainable``; the model's
    train/eval mode and every other parameter's ``requires_grad`` are left as they were. The first adapter on a
    plain model becomes active; otherwise the active adapter does not change.
    """
    folder = Path(path)
    if not (folder / ADAPTER_CONFIG_FILE).is_file():
        raise ModelError(f"{folder} holds no {ADAPTER_CONFIG_FILE}: not a saved LoRA adapter")
    if not (folder / ADAPTER_WEIGHTS_FILE).is_file():
        raise ModelError(
            f"{folder} has no {ADAPTER_WEIGHTS_FILE}; alignkit loads adapters from safetensors only (no pickle "
            f".bin): re-save it with save_adapter() or peft's save_pretrained(safe_serialization=True)"
        )
    _check_new_name(name)
    was_training = model.training
    flags = _grad_flags(model)
    try:
        if isinstance(model, PeftModel):
            if name in model.peft_config:
                raise ModelError(f"adapter {name!r} already exists on this model; pick another name")
            model.load_adapter(str(folder), adapter_name=name, is_trainable=trainable)
            peft_model = model
        else:
            peft_model = PeftModel.from_pretrained(
                model, str(folder), adapter_name=name, is_trainable=trainable
            )
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(
            f"cannot load the adapter in {folder}: {error}. Was it trained on this base model?"
        ) from error
    _restore_grad_flags(flags)
    known = {id(p) for p, _ in flags}
    for param in peft_model.parameters():  # new adapter tensors start frozen; _set_trainable decides
        if id(param) not in known:
            param.requires_grad_(False)
    _set_trainable(peft_model, name, trainable)
    peft_model.train(was_training)
    fuse_lora_layers(peft_model)
    return peft_model


# ------------------------------------------------------------------------------------------- fused forward
def fused_lora_forward(layer: LoraLinear, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """A PEFT LoRA ``Linear``'s forward, ``W0 x + s B A dropout(x)`` with s = alpha / r, as ``addmm``.

    x (..., d_in) -> (..., d_out). PEFT computes ``result + lora_B(lora_A(dropout(x))) * scaling``: a multiply
    and an add over the whole (tokens, d_out) output, each a pass through memory, twice more in the backward
    pass (~9% of a LoRA reward-model step on a 2-core CPU, docs/rm.md). Here ``torch.addmm(result, h, B^T,
    alpha=s)`` with h = A dropout(x) (tokens, r) folds both into the GEMM. The same numbers up to rounding
    (tested against PEFT's forward, values and gradients). Anything else goes to PEFT's forward: adapters
    disabled or merged, several active adapters, DoRA and other variants, a bias on B, a base layer that is
    not ``nn.Linear`` (quantised, Conv1D), extra arguments, or mixed dtypes outside autocast.
    """
    active = layer.active_adapters
    name = active[0] if len(active) == 1 else None
    if (
        args
        or kwargs
        or name is None
        or layer.disable_adapters
        or layer.merged
        or name not in layer.lora_A
        or name in getattr(layer, "lora_variant", {})
        or getattr(layer, "use_dora", {}).get(name, False)
        or type(layer.base_layer) is not nn.Linear
        or layer.lora_B[name].bias is not None
    ):
        return LoraLinear.forward(layer, x, *args, **kwargs)
    weight_a, weight_b = layer.lora_A[name].weight, layer.lora_B[name].weight  # (r, d_in), (d_out, r)
    autocast = torch.is_autocast_enabled(x.device.type)
    if not autocast and not (x.dtype == weight_a.dtype == weight_b.dtype == layer.base_layer.weight.dtype):
        return LoraLinear.forward(layer, x, *args, **kwargs)
    result = layer.base_layer(x)  # (..., d_out)
    low_rank = F.linear(layer.lora_dropout[name](x), weight_a)  # (..., r)
    fused = torch.addmm(
        result.reshape(-1, result.shape[-1]),
        low_rank.reshape(-1, low_rank.shape[-1]),
        weight_b.t(),
        alpha=layer.scaling[name],
    )
    return fused.view(result.shape)


def fuse_lora_layers(model: nn.Module) -> int:
    """Route every PEFT LoRA ``Linear`` in ``model`` through :func:`fused_lora_forward`; return how many.

    Per instance (other PEFT models in the process keep PEFT's forward); idempotent.
    """
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.forward = types.MethodType(fused_lora_forward, module)
            count += 1
    return count


# ----------------------------------------------------------------------------------------------- contexts


@contextlib.contextmanager
def use_adapter(model: nn.Module, name: str) -> Iterator[PeftModel]:
    """Run forward passes with adapter ``name``; the previously active adapter comes back afterwards.

    ``requires_grad`` flags are not changed (see the module docstring), so gradients still reach every
    trainable adapter that took part in the loss.
    """
    peft_model = _as_peft(model, "use_adapter")
    _check_adapter(peft_model, name)
    previous = peft_model.active_adapter
    _set_active(peft_model, name)
    try:
        yield peft_model
    finally:
        _set_active(peft_model, previous)


@contextlib.contextmanager
def reference(model: nn.Module) -> Iterator[nn.Module]:
    """The frozen base model as the reference policy: all adapters disabled, under ``torch.no_grad()``.

    Inside, forward passes give exactly the base model's outputs (LoRA with ``bias="none"`` adds nothing when
    disabled). Adapters, the active adapter and every ``requires_grad`` flag are restored on exit, also when
    the body raises. A model without adapters (full fine-tuning) raises ModelError: its weights *are* the
    policy, so the reference must be a separate copy made before training (:func:`frozen_copy`).
    """
    if not isinstance(model, PeftModel) or not next(_tuner_layers(model), None):
        raise ModelError(
            "reference(model) needs LoRA adapters: without them the model's weights are the trained policy. For "
            "full fine-tuning keep a separate reference model: ref = frozen_copy(model) before training starts"
        )
    flags = _grad_flags(model)
    previous = model.active_adapter
    try:
        with torch.no_grad(), model.disable_adapter():
            yield model
    finally:
        if model.active_adapter != previous:
            model.set_adapter(previous)
        _restore_grad_flags(flags)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parameter frozen: the reference for full fine-tuning.

    Costs one more copy of the weights in memory (540 MB for SmolLM2-135M in fp32).
    """
    clone = copy.deepcopy(model)
    clone.eval()
    clone.requires_grad_(False)
    return clone


# ------------------------------------------------------------------------------------- merge / backbone


def merge_adapter(model: nn.Module, name: str) -> nn.Module:
    """A standalone ``PreTrainedModel`` with adapter ``name`` merged in (``W0 + alpha/r * B A``); for export.

    ``model`` is not changed: the merge runs on a deep copy of the base with its adapters, so it costs one more
    full copy of the weights (base + all adapters) for the duration of the call; the copy's other adapters are
    dropped. The result is in eval mode with frozen parameters.
    """
    peft_model = _as_peft(model, "merge_adapter")
    _check_adapter(peft_model, name)
    tuner = copy.deepcopy(peft_model.base_model)  # the LoraModel: base with LoRA layers, without the wrapper
    merged = tuner.merge_and_unload(adapter_names=[name])
    for param in merged.parameters():
        param.grad = None
    merged.eval()
    merged.requires_grad_(False)
    return merged


def backbone(model: nn.Module) -> nn.Module:
    """The decoder stack (e.g. ``LlamaModel``) whose output has ``last_hidden_state`` (B, T, H).

    LoRA layers live inside it, so the active adapter applies. Scoring heads call this to skip the LM head:
    for SmolLM2 that saves a (B, T, 576) x (576, 49152) matmul per forward pass. Works for a plain
    ``PreTrainedModel`` and a ``PeftModel``.
    """
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    has_head = hasattr(base, "get_output_embeddings") and base.get_output_embeddings() is not None
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    # get_decoder() returns the model itself for a bare decoder, and for a few LM classes it has no rule for.
    if isinstance(decoder, nn.Module) and (decoder is not base or not has_head):
        return decoder
    inner = getattr(base, getattr(base, "base_model_prefix", ""), None)
    if isinstance(inner, nn.Module) and inner is not base:
        return inner
    raise ModelError(f"cannot find the decoder stack of {type(base).__name__} to score hidden states with")
