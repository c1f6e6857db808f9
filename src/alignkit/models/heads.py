"""Scalar heads (reward and value) on a decoder's hidden states, and export as a sequence classifier.

A head is one ``Linear(H, 1, bias=False)`` named ``score``, the layer transformers'
``*ForSequenceClassification`` models put on top of the decoder: a reward model exported with
:func:`export_sequence_classifier` loads with plain ``AutoModelForSequenceClassification.from_pretrained``.

Initialisation follows Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences",
arXiv:1909.08593; code: openai/lm-human-preferences, ``language/model.py`` ``fc_layer``): the reward head's
weights are drawn from N(0, std = 1/sqrt(H + 1)), the value head starts at zero (so V(s) = 0 before training).

Notation: B batch, T tokens, H hidden size.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from alignkit.errors import ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HEAD_INITS = ("reward", "value", "zero")


def last_token_index(attention_mask: torch.Tensor) -> torch.LongTensor:
    """Index of the rightmost real token of each row; works with left and right padding.

    attention_mask: (B, T), 1/True on real tokens. Returns (B,) long. A row without any real token gives 0.
    """
    mask = attention_mask.to(torch.long)
    positions = torch.arange(mask.shape[-1], device=mask.device)  # (T,)
    # Real positions keep their index, padding becomes 0; the max is the last real index in either layout.
    return (positions * mask).argmax(dim=-1)


class ScalarHead(nn.Module):
    """Hidden states (B, T, H) → one scalar per token (B, T), through ``score = Linear(H, 1, bias=False)``.

    The head is kept in fp32 (hidden states are cast to its dtype) so rewards and values do not carry bf16
    rounding. ``init``: ``"reward"`` N(0, 1/sqrt(H+1)); ``"value"`` / ``"zero"`` zeros (Ziegler et al. 2019).
    ``meta`` holds optional extra facts saved with the head, e.g. reward normalisation ``{"mean", "std"}``.
    """

    def __init__(self, hidden_size: int, init: str = "reward", meta: dict[str, Any] | None = None):
        super().__init__()
        if init not in HEAD_INITS:
            raise ValueError(f"init must be one of {HEAD_INITS}, not {init!r}")
        self.hidden_size = int(hidden_size)
        self.init = init
        self.meta: dict[str, Any] = dict(meta or {})
        self.score = nn.Linear(self.hidden_size, 1, bias=False, dtype=torch.float32)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "reward":
                self.score.weight.normal_(mean=0.0, std=1.0 / math.sqrt(self.hidden_size + 1))
            else:
                self.score.weight.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (B, T, H) → (B, T) in the head's dtype (fp32)."""
        return self.score(hidden.to(self.score.weight.dtype)).squeeze(-1)


def score_last_token(hidden: torch.Tensor, attention_mask: torch.Tensor, head: ScalarHead) -> torch.Tensor:
    """The head's score at each row's last real token: hidden (B, T, H), attention_mask (B, T) → (B,).

    Only the B selected hidden vectors go through the head.
    """
    index = last_token_index(attention_mask).to(hidden.device)  # (B,)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return head(hidden[rows, index].unsqueeze(1)).squeeze(1)  # (B, 1, H) → (B, 1) → (B,)


# ------------------------------------------------------------------------------------------ save / load


def _head_files(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}_head.safetensors", folder / f"{name}_head.json"


def save_head(
    head: ScalarHead, folder: str | os.PathLike, name: str, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``{name}_head.safetensors`` (key ``score.weight``) and ``{name}_head.json`` into ``folder``.

    The JSON holds ``hidden_size``, ``init`` and ``head.meta`` updated with ``meta`` (e.g. ``{"mean": m,
    "std": s}`` for reward normalisation). Each file is replaced atomically. Returns the weights path.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    weights, info = _head_files(target, name)
    head.meta.update(meta or {})
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in head.state_dict().items()}
    tmp = weights.with_name(f".{weights.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, weights)
    record = {"hidden_size": head.hidden_size, "init": head.init, "meta": head.meta}
    tmp = info.with_name(f".{info.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, info)
    return weights


def load_head(folder: str | os.PathLike, name: str, hidden_size: int | None = None) -> ScalarHead:
    """Load a head written by :func:`save_head` (fp32); ``hidden_size``, when given, must match the file."""
    weights, info = _head_files(Path(folder), name)
    if not weights.is_file() or not info.is_file():
        raise ModelError(f"no {name!r} head in {folder}: expected {weights.name} and {info.name}")
    try:
        record = json.loads(info.read_text())
        state = load_file(str(weights))
    except Exception as error:
        raise ModelError(f"cannot read the {name!r} head in {folder}: {error}") from error
    size = int(record.get("hidden_size", state["score.weight"].shape[-1]))
    if hidden_size is not None and int(hidden_size) != size:
        raise ModelError(
            f"the {name!r} head in {folder} has hidden size {size}, but the model has {hidden_size}: it was "
            f"trained on another base model"
        )
    head = ScalarHead(size, init=record.get("init", "reward"), meta=record.get("meta"))
    try:
        head.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    except RuntimeError as error:
        raise ModelError(f"the {name!r} head in {folder} does not fit a ScalarHead: {error}") from error
    return head


# ---------------------------------------------------------------------------------------------- export


def export_sequence_classifier(
    model: nn.Module,
    head: ScalarHead,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | os.PathLike,
    adapter: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a plain ``AutoModelForSequenceClassification`` checkpoint (num_labels=1) = backbone + head.

    ``model`` is a causal LM (merged or plain) or a PeftModel, whose adapter ``adapter`` (default: the active
    one) is merged first (:func:`alignkit.models.lora.merge_adapter`, one extra copy of the weights). The
    decoder weights are copied, ``score.weight`` is the head's weight, ``config.pad_token_id`` is the
    tokenizer's pad id, saved in safetensors with the tokenizer and ``head.meta`` (in ``alignkit.json``), built
    in a temp dir and renamed into place. Transformers scores the rightmost token that is not
    ``pad_token_id``, so the pad token must not occur inside real text (``<|endoftext|>`` for SmolLM2).
    The classifier runs in the backbone's dtype (the head is cast to it).
    """
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from alignkit.models.lora import backbone, merge_adapter

    target = Path(out_dir)
    if target.exists() and not overwrite:
        raise ModelError(f"{target} already exists; remove it or pass overwrite=True")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ModelError(
            "the tokenizer's pad token must be set and differ from EOS (use registry.load_tokenizer)"
        )
    if isinstance(model, PeftModel):
        model = merge_adapter(model, adapter or model.active_adapter)
    config = copy.deepcopy(model.config)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = None
    decoder = backbone(model)
    dtype = next(decoder.parameters()).dtype
    try:
        classifier: PreTrainedModel = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    except ValueError as error:
        raise ModelError(
            f"transformers has no sequence classifier for {type(model).__name__}: {error}"
        ) from error
    getattr(classifier, classifier.base_model_prefix).load_state_dict(decoder.state_dict())
    with torch.no_grad():
        classifier.score.weight.copy_(head.score.weight.to(dtype))
    classifier.eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp.", dir=target.parent))
    try:
        classifier.save_pretrained(str(work))
        tokenizer.save_pretrained(str(work))
        record = {"kind": "reward-model", "head": {"hidden_size": head.hidden_size, "meta": head.meta}}
        (work / "alignkit.json").write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, trash / target.name)
            os.replace(work, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target
