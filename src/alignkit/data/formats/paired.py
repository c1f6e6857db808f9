"""Compared answers: HH-RLHF dialogues, TRL preference, StackExchange pairs, our ranking format."""

from __future__ import annotations

import re
from typing import Any

from alignkit.data.formats._common import (
    extra_fields,
    parse_margin,
    require,
    require_text,
    split_shared_prefix,
    to_conversation,
)
from alignkit.data.records import Conversation, Message, Record
from alignkit.errors import DataError

# Anthropic HH-RLHF (Bai et al. 2022) writes a dialogue as one string:
# "\n\nHuman: ...\n\nAssistant: ...". A turn starts at a marker; the one space
# after the colon belongs to the marker.
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def looks_like_hh(text: Any) -> bool:
    return isinstance(text, str) and ("Human:" in text and "Assistant:" in text)


def parse_hh_dialogue(text: str, name: str, source: str) -> Conversation:
    """Messages of one HH-RLHF dialogue string. Content is kept as written (no stripping)."""
    if text.startswith(("Human:", "Assistant:")):  # some copies drop the leading blank line
        text = "\n\n" + text
    parts = _HH_TURN.split(text)  # [before, role, text, role, text, ...]
    if len(parts) < 3:
        raise DataError(f"field '{name}' has no '\\n\\nHuman:' / '\\n\\nAssistant:' turns", source)
    if parts[0].strip():
        raise DataError(f"field '{name}' has text before its first 'Human:' turn: {parts[0][:40]!r}", source)
    messages = []
    for marker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append(Message(_HH_ROLES[marker], content[1:] if content.startswith(" ") else content))
    return tuple(messages)


def parse_hh_rlhf(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"chosen": dialogue, "rejected": dialogue}``: the prompt is the shared turns."""
    chosen = parse_hh_dialogue(require_text(raw, "chosen", source), "chosen", source)
    rejected = parse_hh_dialogue(require_text(raw, "rejected", source), "rejected", source)
    prompt, chosen, rejected = split_shared_prefix(chosen, rejected, source)
    meta = extra_fields(raw, ("chosen", "rejected", "margin"))
    return [Record(prompt, chosen, rejected, margin=parse_margin(raw, source), source=source, meta=meta)]


def parse_trl_preference(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """TRL preference data, standard (text) or conversational (message lists).

    Without a ``prompt`` field ("implicit prompt"), chosen and rejected are
    whole conversations and the prompt is the turns they share.
    """
    chosen_raw, rejected_raw = require(raw, "chosen", source), require(raw, "rejected", source)
    meta = extra_fields(raw, ("prompt", "chosen", "rejected", "margin"))
    margin = parse_margin(raw, source)
    if raw.get("prompt") is not None:
        prompt = to_conversation(raw["prompt"], "prompt", source, "user")
        chosen = to_conversation(chosen_raw, "chosen", source, "assistant")
        rejected = to_conversation(rejected_raw, "rejected", source, "assistant")
        if chosen[: len(prompt)] == prompt and rejected[: len(prompt)] == prompt:
            # Whole conversations beside their prompt (e.g. UltraFeedback binarized): keep the answers.
            chosen, rejected = chosen[len(prompt) :], rejected[len(prompt) :]
    elif looks_like_hh(chosen_raw) and looks_like_hh(rejected_raw):
        return parse_hh_rlhf(raw, source)
    elif isinstance(chosen_raw, list) and isinstance(rejected_raw, list):
        prompt, chosen, rejected = split_shared_prefix(
            to_conversation(chosen_raw, "chosen", source, "assistant"),
            to_conversation(rejected_raw, "rejected", source, "assistant"),
            source,
        )
    else:
        raise DataError(
            "field 'prompt' is missing (without it, chosen and rejected must be whole conversations)", source
        )
    return [Record(prompt, chosen, rejected, margin=margin, source=source, meta=meta)]


def parse_stack_exchange(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"question", "response_j", "response_k"}``: response_j is the answer with more votes."""
    prompt = (Message("user", require_text(raw, "question", source)),)
    chosen = (Message("assistant", require_text(raw, "response_j", source)),)
    rejected = (Message("assistant", require_text(raw, "response_k", source)),)
    meta = extra_fields(raw, ("question", "response_j", "response_k"))
    return [Record(prompt, chosen, rejected, source=source, meta=meta)]


def parse_ranking(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"prompt", "responses": [...], "ranks": [...]}`` (what `Record.to_dict` writes); 0 = best."""
    prompt = to_conversation(require(raw, "prompt", source), "prompt", source, "user")
    responses, ranks = require(raw, "responses", source), require(raw, "ranks", source)
    if not isinstance(responses, list) or not isinstance(ranks, list):
        raise DataError("fields 'responses' and 'ranks' must be lists", source)
    if len(responses) != len(ranks):
        raise DataError(f"{len(responses)} responses but {len(ranks)} ranks", source)
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
        raise DataError(f"field 'ranks' must hold integers (0 = best), got {ranks!r}", source)
    answers = tuple(
        to_conversation(r, f"responses[{i}]", source, "assistant") for i, r in enumerate(responses)
    )
    meta = extra_fields(raw, ("prompt", "responses", "ranks"))
    return [Record(prompt, responses=answers, ranks=tuple(ranks), source=source, meta=meta)]
