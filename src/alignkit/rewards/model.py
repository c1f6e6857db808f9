"""A reward model: a causal LM's decoder (+ a LoRA adapter) and a scalar head on the last real token.

r(x, y) = w · h_T(x, y), where h_T is the decoder's final hidden state at the last real
token of prompt x + answer y and w the head's weight (Ziegler et al. 2019, sec. 2.2;
Ouyang et al. 2022, sec. 3.5). The LM head is never run: for SmolLM2 that skips a
(T, 576) x (576, 49152) matmul per sequence.

Saved layout (``<run>/reward_model/``), so PPO and best-of-n can host the adapter on the
shared base model::

    adapter_config.json, adapter_model.safetensors   the LoRA adapter "reward" (PEFT layout)
    reward_head.safetensors, reward_head.json        the scalar head (fp32)
    alignkit_model.json                              base model, kind "reward", adapter, max_length, ...
    tokenizer files                                  the tokenizer the model was trained with

``--no-lora`` runs save the whole causal LM (``config.json`` + safetensors) instead of
the adapter. :func:`load_reward_model` reads that, a run dir holding it, or a plain
``AutoModelForSequenceClassification`` checkpoint (num_labels=1), e.g. one written by
:func:`export_reward_model`.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.errors import ModelError
from alignkit.models.device import Precision, autocast, resolve_precision
from alignkit.models.shared_prompt import SharedPrompt, common_prefix, mask_for, pack, supports_shared_prompt
from alignkit.rewards.comparisons import Comparison, encode_answers
from alignkit.rewards.encoding import pad_rows

ADAPTER_NAME = "reward"
KIND = "reward"
REWARD_DIR = "reward_model"
DEFAULT_MAX_LENGTH = 1024
# About the longest packed row built for scoring: a row's attention is T x T (docs/sample.md, "Scoring with
# the prompt shared").
PACK_TOKENS = 1024


class RewardModel(nn.Module):
    """Scores prompt + answer sequences: ``forward(input_ids, attention_mask) -> (N,)`` fp32 rewards.

    ``model`` is a causal LM (plain or a PeftModel whose adapter ``adapter`` is used)
    with ``head`` a `ScalarHead`, or an ``AutoModelForSequenceClassification`` with
    ``head=None``. ``score`` takes text and tokenises it like training did.
    """

    def __init__(
        self,
        model: nn.Module,
        head: nn.Module | None,
        tokenizer: Any,
        precision: Precision,
        max_length: int = DEFAULT_MAX_LENGTH,
        adapter: str | None = None,
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.head = head
        self.tokenizer = tokenizer
        self.precision = precision
        self.max_length = int(max_length)
        self.adapter = adapter
        self.meta = dict(meta or {})
        self._decoder: nn.Module | None = None
        if head is not None:
            from alignkit.models.lora import backbone

            self._decoder = backbone(model)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, shared: SharedPrompt | None = None
    ) -> Tensor:
        """input_ids, attention_mask: (N, T), right- or left-padded → rewards (N,) fp32.

        With ``shared`` (see `alignkit.rewards.comparisons.pack_shared`) the rows are packed comparisons
        (R, T) and the N rewards are read at each answer's last token (``shared.rows``, ``shared.last``).
        """
        device = next(self.model.parameters()).device
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with autocast(self.precision, device.type):
            if self.head is None:  # a sequence classifier: transformers picks the last non-pad token
                if shared is not None:
                    raise ModelError("a sequence-classifier reward model cannot score packed comparisons")
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()
            from alignkit.models.heads import score_last_token

            assert self._decoder is not None
            with self._adapter_active():
                # use_cache=False: no KV cache is built for a single scoring pass.
                if shared is None:
                    hidden = self._decoder(
                        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
                    )
                    return score_last_token(hidden.last_hidden_state, attention_mask, self.head)  # (N,)
                shared = shared.to(device)
                hidden = self._decoder(
                    input_ids=input_ids,
                    attention_mask=mask_for(self.model, shared, self._compute_dtype()),
                    position_ids=shared.position_ids,
                    use_cache=False,
                ).last_hidden_state  # (R, T, H)
            picked = hidden[shared.rows, shared.last]  # (N, H) each answer's last token
            return self.head(picked.unsqueeze(1)).squeeze(1)  # (N,)

    @property
    def shares_prompt(self) -> bool:
        """Whether packed comparisons work here: our own head, and an attention that takes a 4D mask."""
        return self.head is not None and supports_shared_prompt(self.model)

    def _compute_dtype(self) -> torch.dtype:
        return self.precision.autocast_dtype or next(self.model.parameters()).dtype

    def _adapter_active(self) -> AbstractContextManager:
        """Switch a shared base to this model's adapter for one forward pass (a no-op when it is active)."""
        from alignkit.models.lora import active_adapter, use_adapter

        if self.adapter is None or active_adapter(self.model) == self.adapter:
            return nullcontext()
        return use_adapter(self.model, self.adapter)

    @torch.no_grad()
    def score(
        self,
        inputs: Sequence[tuple[Any, Any]] | dict[str, Tensor],
        batch_size: int = 16,
    ) -> Tensor:
        """Rewards (N,) of (prompt, answer) pairs (conversations or strings), or of a token batch.

        A token batch is a dict with ``input_ids`` and ``attention_mask`` (N, T). Text is
        cut from the left of the prompt to ``max_length``; an answer longer than that
        alone raises `ModelError` (score it with a larger ``max_length``).
        """
        with self._eval_mode():
            if isinstance(inputs, dict):
                return self(inputs["input_ids"], inputs["attention_mask"]).cpu()
            encoded = encode_answers(self.tokenizer, list(inputs), self.max_length)
        too_long = [i for i, e in enumerate(encoded) if e is None]
        if too_long:
            raise ModelError(
                f"{len(too_long)} answer(s) (first: #{too_long[0]}) are longer than max_length "
                f"{self.max_length} on their own; they cannot be scored without cutting them"
            )
        return self.score_sequences([e.input_ids for e in encoded], batch_size)  # type: ignore[union-attr]

    @torch.no_grad()
    def score_sequences(self, sequences: Sequence[Sequence[int]], batch_size: int = 16) -> Tensor:
        """Rewards (N,) of token-id lists, batched by length (little padding), in input order."""
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out = torch.empty(len(sequences), dtype=torch.float32)
        with self._eval_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                input_ids, attention_mask = pad_rows([sequences[i] for i in chunk], self.pad_id)
                out[chunk] = self(input_ids, attention_mask).float().cpu()
        return out

    @torch.no_grad()
    def score_comparisons(self, comparisons: Sequence[Comparison], batch_size: int = 16) -> list[Tensor]:
        """Rewards of every answer, one (K,) tensor per comparison, in input order (`score_groups`)."""
        return self.score_groups([c.sequences for c in comparisons], batch_size)

    @torch.no_grad()
    def score_groups(self, groups: Sequence[Sequence[Sequence[int]]], batch_size: int = 16) -> list[Tensor]:
        """Rewards of token-id sequences in groups that share a prompt: one (K,) tensor per group, in order.

        A group is the answers to one prompt (a comparison, or best-of-n candidates). With `shares_prompt`
        the group's common prefix is forwarded once per packed row (`models.shared_prompt.pack`); a group
        of more than ``batch_size`` answers, or longer than `PACK_TOKENS` packed, is split evenly over
        several rows, each with its own copy of the prefix. Rows are batched by packed length, about
        ``batch_size`` answers a pass. Without `shares_prompt` every sequence is its own row
        (`score_sequences`). The scores equal those of unpacked rows up to float rounding (tested).
        """
        sizes = [len(group) for group in groups]
        if not self.shares_prompt:
            flat = self.score_sequences([s for group in groups for s in group], batch_size)
            return list(flat.split(sizes))
        packs = _split_groups(groups, max(1, batch_size))  # (group, first, stop), packed length
        packs.sort(key=lambda item: item[1])
        passes: list[list[tuple[int, int, int]]] = [[]]
        answers = 0
        for span, _ in packs:  # consecutive packs of similar length, ~batch_size answers per pass
            count = span[2] - span[1]
            if passes[-1] and answers + count > batch_size:
                passes.append([])
                answers = 0
            passes[-1].append(span)
            answers += count
        out = [torch.empty(size, dtype=torch.float32) for size in sizes]
        with self._eval_mode():
            for spans in passes if packs else []:
                rows = [groups[g][first:stop] for g, first, stop in spans]
                input_ids, attention_mask, layout = pack(rows, self.pad_id)
                scores = self(input_ids, attention_mask, layout).float().cpu()
                counts = [stop - first for _, first, stop in spans]
                for (g, first, stop), part in zip(spans, scores.split(counts), strict=True):
                    out[g][first:stop] = part
        return out

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Score without dropout, then restore the train/eval mode the caller had."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | os.PathLike, base: str) -> Path:
        """Write the reward model into ``folder`` (see the module docstring for the layout)."""
        from alignkit.models.heads import save_head
        from alignkit.models.lora import save_adapter
        from alignkit.models.registry import write_model_meta

        if self.head is None:
            raise ModelError(
                "a sequence-classifier reward model is already a plain checkpoint; copy it instead"
            )
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        if self.adapter is not None:
            save_adapter(self.model, self.adapter, target)
        else:
            self.model.save_pretrained(str(target), safe_serialization=True)
        save_head(self.head, target, KIND)  # type: ignore[arg-type]
        self.tokenizer.save_pretrained(str(target))
        extra = {
            "kind": KIND,
            "max_length": self.max_length,
            "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
            "tokenizer": getattr(self.tokenizer, "name_or_path", ""),
            **{k: v for k, v in self.meta.items() if k not in ("base", "adapter", "kind", "max_length")},
        }
        write_model_meta(target, base=base, adapter=self.adapter or "", **extra)
        return target


def _split_groups(
    groups: Sequence[Sequence[Sequence[int]]], most_answers: int
) -> list[tuple[tuple[int, int, int], int]]:
    """Cut each group into packs ``(group, first, stop)`` and return them with their packed lengths.

    A group that holds more than ``most_answers`` answers, or packs to more than `PACK_TOKENS` tokens, is
    cut into the fewest packs that respect both, with answer counts as equal as possible: equal packs pad
    little when they share a forward pass (a short leftover pack padded to a long one costs as much as a
    full one).
    """
    packs: list[tuple[tuple[int, int, int], int]] = []
    for g, group in enumerate(groups):
        size = len(group)
        if size == 0:
            continue
        whole = _packed_length(group)
        count = max(-(-size // most_answers), -(-whole // PACK_TOKENS), 1)
        count = min(count, size)
        bounds = [round(i * size / count) for i in range(count + 1)]
        for first, stop in itertools.pairwise(bounds):
            packs.append(((g, first, stop), _packed_length(group[first:stop])))
    return packs


def _packed_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens of one packed row holding ``sequences``: their common prefix once, then each one's own part."""
    return sum(len(s) for s in sequences) - (len(sequences) - 1) * common_prefix(sequences)


# ----------------------------------------------------------------- loading
def reward_model_dir(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/reward_model`` when ``path`` is a run directory."""
    folder = Path(path)
    if (folder / REWARD_DIR).is_dir():
        return folder / REWARD_DIR
    return folder


def _architectures(folder: Path) -> list[str]:
    """The ``architectures`` of ``folder/config.json`` ([] without a readable one)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return []
    archs = config.get("architectures") if isinstance(config, dict) else None
    return [str(a) for a in archs] if isinstance(archs, list) else []


def _is_sequence_classifier(folder: Path) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in _architectures(folder))


def check_reward_model(path: str | os.PathLike) -> Path:
    """The folder holding the reward model ``path`` names; a one-line `ModelError` if it holds none.

    A reward model is an `alignkit rm` run (``reward_model/`` with ``alignkit_model.json`` of kind
    "reward") or a sequence classifier; anything else (an empty folder, a causal LM without a head,
    a dpo/sft/ppo run) is refused here, from its metadata, before a tokenizer or weights are loaded.
    """
    from alignkit.models.registry import read_model_meta

    folder = reward_model_dir(path)
    if not folder.is_dir():
        raise ModelError(f"{path}: no such reward model directory")
    meta = read_model_meta(folder)
    if _is_sequence_classifier(folder) or meta.get("kind") == KIND:
        return folder
    if meta.get("trainer"):
        what = f"an `alignkit {meta['trainer']}` run of kind {meta.get('kind')!r}"
    elif meta.get("kind"):
        what = f"alignkit_model.json says kind {meta['kind']!r}"
    elif (folder / "adapter_config.json").is_file():
        what = "a LoRA adapter without a reward head"
    elif _architectures(folder):
        what = f"a {', '.join(_architectures(folder))} checkpoint, without a reward head"
    elif (folder / "config.json").is_file():
        what = "its config.json names no model architecture"
    else:
        what = "no model in it"
    raise ModelError(
        f"{path}: not a reward model ({what}): pass an `alignkit rm` run dir (reward_model/ with "
        "alignkit_model.json of kind 'reward') or an AutoModelForSequenceClassification checkpoint"
    )


def load_reward_model(
    path: str | os.PathLike,
    dtype: str = "auto",
    base_model: nn.Module | None = None,
    max_length: int | None = None,
    device: str | torch.device | None = None,
) -> RewardModel:
    """Load a reward model for scoring (eval mode, frozen).

    ``path``: a run dir of `alignkit rm`, its ``reward_model/`` dir, or a plain
    ``AutoModelForSequenceClassification`` checkpoint with one label. ``dtype``: auto,
    bf16, fp16 or fp32 (as for training: a bf16 base keeps the adapter and head fp32).
    ``base_model``: a causal LM already in memory (e.g. PPO's policy base) to attach the
    ``reward`` adapter to, instead of loading the base again. ``max_length`` defaults
    to the one the model was trained with. ``device``: where the model goes (None: the CPU; commands pass
    `models.device.default_device`); with ``base_model`` it is that model's device.
    """
    from alignkit.models.heads import load_head
    from alignkit.models.lora import load_adapter
    from alignkit.models.registry import load_model, load_tokenizer, read_model_meta

    folder = check_reward_model(path)  # before the tokenizer: a wrong folder gets one line, not its errors
    meta = read_model_meta(folder)
    lora = bool(meta.get("adapter"))
    if base_model is not None:
        device = next(base_model.parameters()).device
    device = torch.device(device) if device is not None else torch.device("cpu")
    # Scoring trains nothing: every weight may live in the compute dtype (the head stays fp32).
    precision = resolve_precision(dtype, lora=True, device=device)
    tokenizer = load_tokenizer(str(folder), padding_side="right")
    length = int(max_length or meta.get("max_length") or DEFAULT_MAX_LENGTH)
    if _is_sequence_classifier(folder):
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), dtype=precision.frozen_dtype, use_safetensors=True, trust_remote_code=False
            )
        except Exception as error:
            raise ModelError(f"cannot load the sequence classifier in {folder}: {error}") from error
        if model.config.num_labels != 1:
            raise ModelError(
                f"{folder}: a reward model has one output, this classifier has {model.config.num_labels}"
            )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        model.to(device)
        head = None
        adapter = None
    elif meta.get("kind") == KIND:
        if lora:
            base = base_model
            if base is None:
                base = load_model(
                    str(meta["base"]), dtype=precision.frozen_dtype, device=device, tokenizer=tokenizer
                )
            model = load_adapter(base, folder, ADAPTER_NAME, trainable=False)
            adapter = ADAPTER_NAME
        else:
            model = load_model(str(folder), dtype=precision.frozen_dtype, device=device, tokenizer=tokenizer)
            adapter = None
        head = load_head(folder, KIND, hidden_size=model.config.hidden_size).to(device)
    else:  # unreachable: check_reward_model refused it
        raise ModelError(f"{folder}: not a reward model")
    if base_model is None:  # a shared base keeps its owner's mode and trainable flags
        model.eval()
        model.requires_grad_(False)
    rm = RewardModel(model, head, tokenizer, precision, length, adapter, meta)
    if head is not None:
        head.eval()
        head.requires_grad_(False)
    return rm


def export_reward_model(path: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a plain ``AutoModelForSequenceClassification`` checkpoint (fp32) of a trained reward model.

    The LoRA adapter is merged into a copy of the base; the head becomes the
    classifier's ``score`` layer. ``alignkit_model.json`` beside it keeps the
    ``max_length`` and base model for alignkit's own loaders.
    """
    from alignkit.models.heads import export_sequence_classifier
    from alignkit.models.registry import read_model_meta, write_model_meta

    folder = reward_model_dir(path)
    if _is_sequence_classifier(folder):
        raise ModelError(f"{folder} is already a plain sequence-classifier checkpoint")
    rm = load_reward_model(folder, dtype="fp32")
    meta = read_model_meta(folder)
    target = export_sequence_classifier(
        rm.model,
        rm.head,
        rm.tokenizer,
        output,
        adapter=rm.adapter,
        overwrite=overwrite,  # type: ignore[arg-type]
    )
    extra = {k: v for k, v in meta.items() if k not in ("base", "adapter")}
    write_model_meta(
        target, base=str(meta.get("base", "")), adapter="", **{**extra, "format": "sequence-classifier"}
    )
    return target
