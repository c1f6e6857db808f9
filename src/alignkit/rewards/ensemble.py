"""Several reward models as one score: weighted sum, minimum, or a safety gate.

Used by PPO (the score of each rollout), `sample --best-of-n` (the rerank key)
and evaluation. The per-model scores always come back separately too, so the
reward-hacking watch can log each one (``reward/<name>``).

Combination rules for scores s_i with weights w_i:

- ``sum``  (default): ``Σ_i w_i s_i``.
- ``min``:  ``min_i w_i s_i`` -- the worst-served objective decides (a response must
  satisfy every reward model; with scores on a common scale, e.g. whitened).
- ``gate``: a safety gate in the spirit of Llama 2 (Touvron et al. 2023,
  arXiv:2307.09288, sec. 3.2.2, eq. 4, where the safety score replaces the
  helpfulness score when it is below 0.15): with gate model g and threshold τ,
  ``R = penalty if s_g < τ else Σ_{i≠g} w_i s_i``; without a fixed penalty the gate
  model's own score is used below the threshold (Llama 2's rule).

Each member scores token ids directly when its tokenizer is the policy's
(shared base: no decode/re-encode); a reward model on another tokenizer gets
the *text* of the prompt and response, re-tokenised with its own chat template
(`alignkit.rewards.encoding.encode_conversations`).

Notation: B responses; T tokens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from alignkit.data.records import Conversation
from alignkit.errors import ConfigError
from alignkit.rewards.encoding import as_conversation, encode_conversations, tokenizer_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

COMBINES = ("sum", "min", "gate")
PromptLike = "Conversation | str"


# ------------------------------------------------------------------------------------------ scorers


class Scorer(Protocol):
    """A reward model: token ids in its own tokenizer's vocabulary → one score per row."""

    tokenizer: PreTrainedTokenizerBase

    def score_ids(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """input_ids, attention_mask: (B, T), any padding side → (B,) float32, scored at the last real token."""
        ...


@dataclass
class FunctionScorer:
    """A reward computed from text by a Python function ``fn(prompts, responses) -> (B,)``.

    For rule-based rewards (length, format checks) and tests. It has no tokenizer, so it
    always receives text.
    """

    fn: Callable[[list[Conversation], list[str]], Tensor | Sequence[float]]
    tokenizer: Any = None

    def score_text(self, prompts: list[Conversation], responses: list[str]) -> Tensor:
        return torch.as_tensor(self.fn(prompts, responses), dtype=torch.float32).reshape(-1)


# ------------------------------------------------------------------------------------------ the set


@dataclass
class RewardMember:
    """One reward model in a `RewardSet`."""

    name: str  # metric name: reward/<name>
    scorer: Any  # a Scorer (score_ids) or a FunctionScorer (score_text)
    weight: float = 1.0
    max_length: int | None = None  # re-tokenised rows are cut to this many tokens (from the left)


@dataclass
class TokenBatch:
    """Prompt+response ids already tokenised by the policy, for members that share its tokenizer.

    input_ids, attention_mask: (B, T); attention_mask True on real tokens, response
    ending at each row's last real token (EOS included when the response ended).
    """

    input_ids: Tensor
    attention_mask: Tensor
    tokenizer: Any


@dataclass
class RewardSet:
    """Reward models combined into one score; see the module docstring for the rules."""

    members: list[RewardMember]
    combine: str = "sum"
    gate: tuple[str, float] | None = None  # (member name, threshold) for combine="gate"
    gate_penalty: float | None = None  # fixed score below the threshold; None: the gate model's own score
    forward_batch_size: int = 16
    retokenised: dict[str, int] = field(
        default_factory=dict
    )  # member name -> rows scored from re-tokenised text

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError("at least one reward model is needed (--reward-model DIR)")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ConfigError(f"reward model names must differ, got {names}; name them with NAME=DIR")
        if self.combine not in COMBINES:
            raise ConfigError(f"reward combine must be one of {', '.join(COMBINES)}, got {self.combine!r}")
        if self.combine == "gate":
            if self.gate is None:
                raise ConfigError("combine 'gate' needs a gate NAME:THRESHOLD")
            if self.gate[0] not in names:
                raise ConfigError(f"the reward gate names {self.gate[0]!r}, which is not one of {names}")
            if len(names) < 2 and self.gate_penalty is None:
                raise ConfigError("a gate without other reward models needs a fixed --reward-gate-penalty")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def combine_scores(self, per_model: dict[str, Tensor]) -> Tensor:
        """Per-model scores {name: (B,)} → combined (B,), by the set's rule.

        A NaN from a member that may abstain (a reward function's None: ``scorer.abstains``)
        makes that row's combined score NaN ("no reward") under every rule; reward models
        do not abstain and combine exactly as before.
        """
        combined = self._combine_rule(per_model)
        abstained = [
            per_model[m.name].float().isnan() for m in self.members if getattr(m.scorer, "abstains", False)
        ]
        if abstained:
            combined = combined.masked_fill(torch.stack(abstained).any(0), math.nan)
        return combined

    def _combine_rule(self, per_model: dict[str, Tensor]) -> Tensor:
        weighted = {m.name: m.weight * per_model[m.name].float() for m in self.members}
        if self.combine == "sum":
            return torch.stack(list(weighted.values())).sum(0)
        if self.combine == "min":
            return torch.stack(list(weighted.values())).min(0).values
        assert self.gate is not None
        gate_name, threshold = self.gate
        gate_scores = per_model[gate_name].float()
        others = [v for k, v in weighted.items() if k != gate_name]
        passed = torch.stack(others).sum(0) if others else torch.zeros_like(gate_scores)
        below = gate_scores if self.gate_penalty is None else torch.full_like(gate_scores, self.gate_penalty)
        return torch.where(gate_scores < threshold, below, passed)

    @torch.no_grad()
    def score(
        self,
        prompts: Sequence[Conversation | str],
        responses: Sequence[str],
        batch: TokenBatch | None = None,
        finished: Sequence[bool] | None = None,
        groups: Sequence[int] | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Score responses with every member and combine.

        Args:
            prompts: B prompts (Conversations, or text taken as one user turn).
            responses: B response texts (without the end-of-turn token).
            batch: the same rows as token ids in the caller's tokenizer, rendered as
                :func:`encode_conversations` would (finished rows end with EOS + the
                :func:`template_suffix_ids`); members with an identical tokenizer (same
                :func:`tokenizer_fingerprint`) that has a chat template score these ids, the others
                re-tokenise the text (a tokenizer without a template: the sampler's ids lack the blank
                line `render_conversation` puts between prompt and answer).
            finished: B flags, False for responses cut at the length limit (default: all True).
            groups: B group ids; rows with the same id answer the same prompt (best-of-n candidates).
                Members that can (`ModelScorer.score_groups`) then forward each group's prompt once.
            columns: keyword arguments for reward functions (members with ``scorer.takes_columns``,
                `alignkit.rewards.functions.RewardFunctionScorer`): the prompt records' columns as
                B-long lists (`record_columns`), ``completion_ids``, ``trainer_state``.

        Returns:
            combined: (B,) float32; per_model: {name: (B,) float32}, raw (unweighted) scores.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        per_model: dict[str, Tensor] = {}
        batch_fp = tokenizer_fingerprint(batch.tokenizer) if batch is not None else None
        for member in self.members:
            per_model[member.name] = self._score_member(
                member, prompts, responses, batch, batch_fp, finished, groups, columns
            )
        return self.combine_scores(per_model), per_model

    def _score_member(
        self, member, prompts, responses, batch, batch_fp, finished, groups, columns=None
    ) -> Tensor:
        scorer = member.scorer
        if hasattr(scorer, "score_text"):
            texts = list(map(as_conversation, prompts)), list(responses)
            kwargs: dict[str, Any] = {}
            if getattr(scorer, "takes_columns", False):
                kwargs["columns"] = columns
            if getattr(scorer, "takes_groups", False):  # a pairwise judge compares the answers to one prompt
                kwargs["groups"] = groups
            return scorer.score_text(*texts, **kwargs)
        # Without a chat template the sampler's ids join prompt and answer with nothing between them, but
        # `alignkit rm` trained on prompt + blank line + answer + EOS (`render_conversation`): re-render.
        same = (
            batch is not None
            and tokenizer_fingerprint(scorer.tokenizer) == batch_fp
            and bool(getattr(scorer.tokenizer, "chat_template", None))
        )
        if same:
            ids, mask = batch.input_ids, batch.attention_mask
        else:
            ids, mask = encode_conversations(
                scorer.tokenizer, prompts, responses, finished, member.max_length
            )
            self.retokenised[member.name] = self.retokenised.get(member.name, 0) + len(responses)
        if groups is not None and len(set(groups)) < len(groups) and getattr(scorer, "shares_prompt", False):
            return _score_grouped(scorer, ids, mask, groups, self.forward_batch_size)
        out = []
        for start in range(0, ids.shape[0], self.forward_batch_size):
            rows = slice(start, start + self.forward_batch_size)
            used = mask[rows].bool().any(0).nonzero()[:, 0]  # drop columns that are padding in every row
            cols = slice(int(used[0]), int(used[-1]) + 1) if used.numel() else slice(None)
            out.append(scorer.score_ids(ids[rows, cols], mask[rows, cols]).float().reshape(-1))
        return torch.cat(out) if out else torch.zeros(0)


def _score_grouped(scorer: Any, ids: Tensor, mask: Tensor, groups: Sequence[int], batch_size: int) -> Tensor:
    """(B,) scores of padded rows ``ids``, ``mask`` (B, T), the rows of each group scored together."""
    members: dict[int, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    rows = [[ids[i][mask[i].bool()].tolist() for i in index] for index in members.values()]
    scores = scorer.score_groups(rows, batch_size)
    out = torch.empty(len(groups), dtype=torch.float32)
    for index, part in zip(members.values(), scores, strict=True):
        out[index] = part.float()
    return out


# --------------------------------------------------------------------------------------- loading


@dataclass
class ModelScorer:
    """An `alignkit.rewards.model.RewardModel` (adapter + head, or a sequence classifier) as a `Scorer`."""

    model: Any  # RewardModel: forward(input_ids, attention_mask) -> (B,)
    shared: bool = (
        False  # True when its adapter sits on a base model owned by someone else (PPO's policy base)
    )

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def score_ids(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask).float().cpu()

    @property
    def shares_prompt(self) -> bool:
        """Whether `score_groups` forwards a group's common prompt once (`RewardModel.shares_prompt`)."""
        return bool(getattr(self.model, "shares_prompt", False))

    def score_groups(self, groups: Sequence[Sequence[Sequence[int]]], batch_size: int) -> list[Tensor]:
        """Token-id lists in groups sharing a prompt → one (K,) float32 tensor per group."""
        return self.model.score_groups(groups, batch_size)


def same_base(a: str, b: str) -> bool:
    """True when two model names mean the same base checkpoint (the embedded default, or one resolved path)."""
    from alignkit.models import default, registry

    if default.is_default(a) or default.is_default(b):
        return default.is_default(a) and default.is_default(b)
    try:
        return Path(registry.resolve(a)).resolve() == Path(registry.resolve(b)).resolve()
    except Exception:  # an unresolvable name (hub id offline): compare the text
        return a.strip() == b.strip()


def load_reward_set(
    specs: Sequence[str],
    weights: Sequence[float] | None = None,
    combine: str = "sum",
    gate: str | None = None,
    gate_penalty: float | None = None,
    dtype: str = "auto",
    shared_model: Any = None,
    shared_base: str | None = None,
    forward_batch_size: int = 16,
    gate_option: str = "--reward-gate",
    device: str | torch.device | None = None,
    functions: Sequence[RewardMember] = (),
) -> RewardSet:
    """Load reward models (``NAME=DIR`` or ``DIR`` each) into a `RewardSet`.

    An `alignkit rm` LoRA reward model trained on ``shared_base`` is attached as one more
    frozen adapter (``reward``, ``reward_2``, ...) to ``shared_model`` (a PeftModel already
    holding other adapters, e.g. PPO's policy) instead of loading its base again; any
    other reward model (another base, a full fine-tune, a sequence classifier) loads
    on its own. ``gate`` is ``NAME:THRESHOLD`` for ``combine="gate"``; ``gate_option`` is the flag that gave
    it, named in `parse_gate`'s errors. ``device``: where the models that load on their own go (None: the
    CPU; commands pass `models.device.default_device`); adapters on ``shared_model`` live on its device.
    ``functions``: reward functions and verifiers (`alignkit.rewards.functions.function_member`, their own
    weights), members after the models; the gate may name one.
    """
    from alignkit.models.device import resolve_precision
    from alignkit.models.heads import load_head
    from alignkit.models.lora import load_adapter
    from alignkit.models.registry import load_tokenizer, read_model_meta
    from alignkit.rewards.model import (
        DEFAULT_MAX_LENGTH,
        KIND,
        RewardModel,
        check_reward_model,
        load_reward_model,
    )

    if weights and len(weights) != len(specs):
        raise ConfigError(f"{len(weights)} reward weights for {len(specs)} reward models: give one per model")
    parsed = [parse_reward_spec(s) for s in specs]
    names = unique_names([n for n, _ in parsed])
    folders = [check_reward_model(path) for _, path in parsed]  # every one, before any model loads
    members = []
    shared_count = 0
    for index, (name, (_, path), folder) in enumerate(zip(names, parsed, folders, strict=True)):
        meta = read_model_meta(folder)
        share = (
            shared_model is not None
            and shared_base is not None
            and meta.get("kind") == KIND
            and bool(meta.get("adapter"))
            and same_base(str(meta.get("base", "")), shared_base)
        )
        if share:
            adapter = "reward" if shared_count == 0 else f"reward_{shared_count + 1}"
            shared_count += 1
            shared_device = next(shared_model.parameters()).device
            precision = resolve_precision(dtype, lora=True, device=shared_device)
            load_adapter(shared_model, folder, adapter, trainable=False)
            head = load_head(folder, KIND, hidden_size=shared_model.config.hidden_size).to(shared_device)
            head.eval()
            head.requires_grad_(False)
            tokenizer = load_tokenizer(str(folder), padding_side="right")
            length = int(meta.get("max_length") or DEFAULT_MAX_LENGTH)
            rm = RewardModel(shared_model, head, tokenizer, precision, length, adapter, meta)
        else:
            rm = load_reward_model(path, dtype=dtype, device=device)
        weight = float(weights[index]) if weights else 1.0
        members.append(RewardMember(name, ModelScorer(rm, shared=share), weight, rm.max_length))
    members += functions
    gate_spec = parse_gate(gate, [m.name for m in members], gate_option) if gate is not None else None
    return RewardSet(members, combine, gate_spec, gate_penalty, forward_batch_size)


# --------------------------------------------------------------------------------------- parsing specs

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def parse_reward_spec(spec: str) -> tuple[str, str]:
    """``"NAME=DIR"`` or ``"DIR"`` → (name, dir). The default name is the dir's last component.

    A spec whose whole text is an existing path is a dir even if it contains '='.
    """
    text = spec.strip()
    if "=" in text and not Path(text).exists():
        name, _, path = text.partition("=")
        if _NAME.match(name) and path:
            return name, path
    name = Path(text.rstrip("/")).name or "reward"
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return name, text


def unique_names(names: Sequence[str]) -> list[str]:
    """Make names unique by suffixing -2, -3, ... to repeats (two runs both called 'final')."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def parse_gate(spec: str, names: Sequence[str], option: str = "--reward-gate") -> tuple[str, float]:
    """``"NAME:THRESHOLD"`` (or ``"INDEX:THRESHOLD"``, 0-based) → (member name, threshold).

    ``option`` is the flag the user typed (``--reward-gate`` for ppo, ``--gate`` for sample): errors name it.
    """
    name, sep, value = spec.rpartition(":")
    if not sep or not name:
        raise ConfigError(f"{option} must look like NAME:THRESHOLD (e.g. safety:0.15), got {spec!r}")
    try:
        threshold = float(value)
    except ValueError:
        raise ConfigError(f"{option} threshold must be a number, got {value!r} in {spec!r}") from None
    if not math.isfinite(threshold):
        raise ConfigError(f"{option} threshold must be finite, got {value!r}")
    if name not in names and name.isdigit() and int(name) < len(names):
        name = names[int(name)]
    if name not in names:
        raise ConfigError(f"{option} names {name!r}, which is not one of the reward models {list(names)}")
    return name, threshold


__all__ = [
    "COMBINES",
    "ModelScorer",
    "load_reward_set",
    "same_base",
    "FunctionScorer",
    "RewardMember",
    "RewardSet",
    "Scorer",
    "TokenBatch",
    "parse_gate",
    "parse_reward_spec",
    "unique_names",
]
