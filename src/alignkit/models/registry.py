"""Model names → checkpoints; the only place that loads tokenizers and causal LMs.

A model name is one of:

* the embedded default, ``smollm2-135m-instruct`` (aliases: ``default``, ``smollm2``, ...): its checkpoint is
  converted once from the shipped GGUF into alignkit's cache (:func:`alignkit.models.default.prepare_default`);
* a local directory holding ``config.json`` + ``*.safetensors`` (a Hugging Face checkpoint);
* an alignkit run or adapter directory (``adapter_config.json``, usually with ``alignkit_model.json`` naming its
  base model): :func:`resolve` returns the path; :func:`load_model` loads the base and attaches the adapter;
* a Hugging Face hub id (``org/name``), used from the local HF cache when it is there (no network call), else
  downloaded by transformers when the hub is reachable.

This module also reads and writes the run/adapter metadata (``alignkit_model.json``: :func:`write_model_meta`,
:func:`read_model_meta`, :func:`adapter_base`). Pad-token fixes live in :mod:`alignkit.models.tokenizer`.

Everything that goes wrong raises :class:`~alignkit.errors.ModelError` with a message that says what to do.
Secure defaults: ``trust_remote_code=False`` and safetensors weights only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alignkit.errors import ModelError
from alignkit.models.default import (
    DEFAULT_MODEL,
    _is_prepared,
    default_model_dir,
    gguf_tokenizer,
    is_default,
    prepare_default,
)
from alignkit.models.device import resolve_dtype
from alignkit.models.tokenizer import _check_padding_side, fix_pad_token

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MODEL_META_FILE = "alignkit_model.json"  # written by trainers into a run/adapter dir: names the base model
ADAPTER_CONFIG_FILE = "adapter_config.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


# ------------------------------------------------------------------------------------------- resolution


def _hub_offline() -> bool:
    """Offline when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now (read at call time, not import time)."""
    from huggingface_hub import constants

    def truthy(value: str | None) -> bool:
        return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}

    env = truthy(os.environ.get("HF_HUB_OFFLINE")) or truthy(os.environ.get("TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def _cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot dir of ``repo_id`` in the Hugging Face cache, if its config and weights are there.

    Only looks at the disk (no network).
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(repo_id=repo_id, filename="config.json")
    except Exception:  # an id the hub library rejects is simply not cached
        return None
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    return snapshot if any(snapshot.glob("*.safetensors")) else None


def _not_found_message(name: str) -> str:
    return (
        f"model '{name}' is not a local path, not the embedded default ({DEFAULT_MODEL}), and not in the Hugging "
        f"Face cache; the hub is unreachable. Download it where you have network (huggingface-cli download "
        f"{name}) or pass a local path."
    )


def _hub_check(name: str, timeout: float = 5.0) -> None:
    """Raise ModelError unless the hub answers for ``name`` within ``timeout`` seconds."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=timeout)
    except GatedRepoError as error:
        raise ModelError(
            f"model '{name}' is gated on the Hugging Face hub: accept its licence on huggingface.co and run "
            f"`huggingface-cli login`, then try again"
        ) from error
    except RepositoryNotFoundError as error:
        raise ModelError(
            f"model '{name}' is not a local path, not the embedded default ({DEFAULT_MODEL}), and the Hugging "
            f"Face hub has no such model (or it is private: run `huggingface-cli login`). Check the spelling."
        ) from error
    except Exception as error:  # connection refused, DNS, timeout, proxy ...
        raise ModelError(_not_found_message(name)) from error


def resolve(name: str | os.PathLike) -> str:
    """Turn a model name into something ``from_pretrained`` can open without surprises.

    * the embedded default (:data:`DEFAULT_MODEL` or an alias) → its prepared dir (prepared on demand);
    * an existing directory → its absolute path; it must hold ``config.json`` (a checkpoint) or
      ``adapter_config.json`` (an alignkit run/adapter dir: see :func:`adapter_base`, :func:`load_model`);
    * a hub id in the local HF cache → that snapshot dir (no network call);
    * a hub id not cached → the id itself when the hub answers (transformers downloads it), else ModelError.
    """
    text = str(name).strip()
    if not text:
        raise ModelError(f"empty model name: pass a local checkpoint dir, a hub id, or '{DEFAULT_MODEL}'")
    if is_default(text):
        return str(prepare_default())
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(
                f"model path '{text}' is a file; pass the directory that holds config.json and *.safetensors"
                f" (only the embedded default is read from a .gguf)"
            )
        if (path / ADAPTER_CONFIG_FILE).is_file() or (path / "config.json").is_file():
            return str(path.resolve())
        raise ModelError(
            f"'{text}' is a directory but has no config.json, so it is not a Hugging Face checkpoint: pass the"
            f" folder that holds config.json and *.safetensors, or an alignkit run dir with adapter_config.json"
        )
    if not _HUB_ID.match(text) or text.startswith((".", "~")):
        raise ModelError(f"model path '{text}' does not exist; check the path, or use '{DEFAULT_MODEL}'")
    snapshot = _cached_snapshot(text)
    if snapshot is not None:
        return str(snapshot)
    if _hub_offline():
        raise ModelError(_not_found_message(text))
    _hub_check(text)
    return text


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """True for a directory holding a PEFT adapter (``adapter_config.json``), e.g. an alignkit run dir."""
    return (Path(path) / ADAPTER_CONFIG_FILE).is_file()


def write_model_meta(folder: str | os.PathLike, base: str, adapter: str = "default", **extra: Any) -> Path:
    """Write ``alignkit_model.json`` (base model name, adapter name, extra fields) into an adapter/run dir.

    Trainers call this next to :func:`alignkit.models.lora.save_adapter` so the dir can be passed as a model.
    ``base`` is the name the user gave (the default's name, a hub id) or a local path (stored absolute).
    """
    path = Path(folder) / MODEL_META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    local = Path(str(base)).expanduser()
    if not is_default(base) and local.exists():
        base = str(local.resolve())  # a relative path would later resolve against another cwd
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"base": str(base), "adapter": adapter, **extra}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_model_meta(folder: str | os.PathLike) -> dict:
    """The ``alignkit_model.json`` of a run/adapter dir, or ``{}`` when it has none."""
    path = Path(folder) / MODEL_META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except ValueError as error:
        raise ModelError(
            f"{path}: not valid JSON ({error}); delete it or rewrite it with the base model name"
        ) from error
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: expected a JSON object with a 'base' field")
    return meta


def adapter_base(folder: str | os.PathLike) -> str:
    """The base model name an adapter dir was trained on (``alignkit_model.json`` first, then PEFT's config)."""
    meta = read_model_meta(folder)
    if meta.get("base"):
        return str(meta["base"])
    try:
        config = json.loads((Path(folder) / ADAPTER_CONFIG_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{folder}: cannot read {ADAPTER_CONFIG_FILE} ({error})") from error
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelError(
            f"{folder}: the adapter does not name its base model; add {MODEL_META_FILE} with "
            f'{{"base": "<model>"}} or pass the base model explicitly'
        )
    return str(base)


def head_size(config: Any) -> int:
    """Size of one attention head of a transformers config: ``head_dim`` where the config sets it (Gemma,
    Qwen3), else hidden size / query heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


# --------------------------------------------------------------------------------------------- tokenizers


def load_tokenizer(
    name: str | os.PathLike, padding_side: str = "left", trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of model ``name`` (any form :func:`resolve` accepts, or a tokenizer-only dir).

    The pad token is fixed (:func:`alignkit.models.tokenizer.fix_pad_token`). ``padding_side`` defaults to ``"left"``, what batched
    generation needs; trainers that pad on the right pass ``"right"``. For the embedded default that is not
    prepared yet, the tokenizer is read from the GGUF without converting the model.
    """
    from transformers import AutoTokenizer

    side = _check_padding_side(padding_side)
    text = str(name).strip()
    if is_default(text) and not _is_prepared(default_model_dir(), None):
        return gguf_tokenizer(padding_side=side)
    local = Path(text).expanduser()
    if local.is_dir() and any((local / f).is_file() for f in _TOKENIZER_FILES):
        path = str(local.resolve())
    else:
        path = resolve(text)
        if is_adapter_dir(path) and not any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
            return load_tokenizer(adapter_base(path), padding_side=side, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as error:
        raise ModelError(
            f"cannot load a tokenizer for '{text}' from {path}: {error}. The folder needs tokenizer.json or "
            f"tokenizer_config.json (save it with tokenizer.save_pretrained)"
        ) from error
    fix_pad_token(tokenizer)
    tokenizer.padding_side = side
    return tokenizer


# ------------------------------------------------------------------------------------------------ models


def load_model(
    name: str | os.PathLike,
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool = False,
    for_training: bool = False,
    device: str | torch.device | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> PreTrainedModel:
    """Load a causal LM (``AutoModelForCausalLM``, safetensors only) with its weights in ``dtype``.

    ``config.pad_token_id`` (and the generation config's) is set from the tokenizer (:func:`load_tokenizer`
    unless given), so it is never EOS; the embedding table grows if the tokenizer gained a pad token. Dropout
    settings are left as the checkpoint has them. ``for_training=False`` returns the model in eval mode with
    every parameter frozen (``requires_grad=False``; LoRA adapters added later are trainable);
    ``for_training=True`` returns it in train mode with all parameters trainable (full fine-tuning).

    An adapter dir (see :func:`resolve`) loads its base model and attaches the adapter under the name recorded
    in ``alignkit_model.json`` (default ``"default"``), trainable when ``for_training``: a ``PeftModel``.
    """
    from transformers import AutoModelForCausalLM

    path = resolve(name)
    if is_adapter_dir(path):
        from alignkit.models.lora import load_adapter

        base = load_model(
            adapter_base(path),
            dtype,
            trust_remote_code,
            for_training=False,
            device=device,
            tokenizer=tokenizer,
        )
        adapter = str(read_model_meta(path).get("adapter") or "default")
        model = load_adapter(base, path, adapter, trainable=for_training)
        model.train(for_training)
        return model
    torch_dtype = resolve_dtype(dtype, device)
    if tokenizer is None:
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except Exception as error:
        raise ModelError(
            f"cannot load model '{name}' from {path}: {error}. alignkit loads causal LMs with *.safetensors "
            f"weights only (no pickle .bin files); convert the checkpoint or pass another model"
        ) from error
    if (
        tokenizer.pad_token_id is not None
        and tokenizer.pad_token_id >= model.get_input_embeddings().weight.shape[0]
    ):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model.to(device)
    model.train(for_training)
    model.requires_grad_(for_training)
    return model
