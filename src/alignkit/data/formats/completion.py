"""Single answers: TRL prompt-completion (with or without a label) and ShareGPT / LLaMA-Factory chats."""

from __future__ import annotations

from typing import Any

from alignkit.data.formats._common import (
    extra_fields,
    parse_bool,
    parse_margin,
    require,
    split_last_answer,
    to_conversation,
    with_system,
)
from alignkit.data.records import Record
from alignkit.errors import DataError


def parse_trl_unpaired(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"prompt", "completion", "label"}`` (TRL unpaired preference, as KTO reads it)."""
    prompt = to_conversation(require(raw, "prompt", source), "prompt", source, "user")
    completion = to_conversation(require(raw, "completion", source), "completion", source, "assistant")
    label = parse_bool(require(raw, "label", source), "label", source)
    if label is None:
        raise DataError("field 'label' is empty", source)
    meta = extra_fields(raw, ("prompt", "completion", "label"))
    return [Record(prompt, completion=completion, label=label, source=source, meta=meta)]


def parse_trl_sft(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"prompt", "completion"}``, or ``{"messages": [...]}`` whose last assistant turn is the answer."""
    if "messages" in raw and "completion" not in raw:
        messages = to_conversation(require(raw, "messages", source), "messages", source, "user")
        prompt, completion = split_last_answer(with_system(messages, raw.get("system")), "messages", source)
        meta = extra_fields(raw, ("messages", "system"))
    else:
        prompt = to_conversation(require(raw, "prompt", source), "prompt", source, "user")
        completion = to_conversation(require(raw, "completion", source), "completion", source, "assistant")
        meta = extra_fields(raw, ("prompt", "completion"))
    return [Record(prompt, completion=completion, source=source, meta=meta)]


def parse_sharegpt(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """ShareGPT chats as LLaMA-Factory writes them.

    * ``{"conversations": [{"from", "value"}], "chosen": {...}, "rejected": {...}}``:
      preference; the conversation is the prompt, chosen and rejected are answers
      (one message, or a list of messages).
    * ``{"conversations": [...]}`` alone: sft; the last assistant turn is the completion.
    * ``{"messages": [{"role", "content"}], "label": true}`` (LLaMA-Factory KTO): unpaired;
      the last assistant turn is the completion.

    A separate ``system`` field becomes the first message.
    """
    key = "conversations" if "conversations" in raw else "messages"
    conv = with_system(to_conversation(require(raw, key, source), key, source, "user"), raw.get("system"))
    meta = extra_fields(raw, (key, "system", "chosen", "rejected", "label", "margin"))
    if "chosen" in raw or "rejected" in raw:
        chosen = to_conversation(require(raw, "chosen", source), "chosen", source, "assistant")
        rejected = to_conversation(require(raw, "rejected", source), "rejected", source, "assistant")
        return [Record(conv, chosen, rejected, margin=parse_margin(raw, source), source=source, meta=meta)]
    prompt, completion = split_last_answer(conv, key, source)
    if raw.get("label") is not None:
        label = parse_bool(raw["label"], "label", source)
        return [Record(prompt, completion=completion, label=label, source=source, meta=meta)]
    return [Record(prompt, completion=completion, source=source, meta=meta)]
