"""OpenAssistant message trees (Köpf et al. 2023, "OpenAssistant Conversations").

One tree per line: ``{"message_tree_id", "prompt": node}`` or a bare node, where
a node is ``{"text", "role": "prompter"|"assistant", "rank", "emojis", "replies": [node]}``.
People ranked sibling replies (``rank`` 0 = best; null = not ranked) and voted on
each message with emojis ("+1", "-1").

The whole tree is walked. Every node with at least two ranked assistant replies
gives one ranking; its prompt is the conversation from the root down to that
node. For ``kind="unpaired"`` each assistant reply with more "+1" than "-1"
votes is desirable, with fewer undesirable; equal or absent votes give nothing.
Deleted messages and everything below them are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alignkit.data.formats._common import normalize_role, require
from alignkit.data.records import Conversation, Message, Record
from alignkit.errors import DataError


def is_oasst_tree(raw: Any) -> bool:
    node = raw.get("prompt") if isinstance(raw.get("prompt"), Mapping) else raw
    return isinstance(node, Mapping) and "replies" in node and "text" in node and "role" in node


def _message(node: Mapping[str, Any], source: str) -> Message:
    text = node.get("text")
    if not isinstance(text, str):
        raise DataError(f"message {node.get('message_id', '?')}: field 'text' is missing", source)
    return Message(normalize_role(node.get("role", "")), text)


def _votes(node: Mapping[str, Any]) -> bool | None:
    emojis = node.get("emojis")
    if not isinstance(emojis, Mapping):
        return None
    up, down = emojis.get("+1", 0) or 0, emojis.get("-1", 0) or 0
    return None if up == down else up > down


def parse_oasst_tree(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    root = raw["prompt"] if isinstance(raw.get("prompt"), Mapping) else raw
    require(root, "replies", source)
    tree_id = raw.get("message_tree_id", root.get("message_id"))
    records: list[Record] = []

    def walk(node: Mapping[str, Any], path: Conversation) -> None:
        replies = [r for r in node.get("replies") or () if isinstance(r, Mapping) and not r.get("deleted")]
        meta = {"message_tree_id": tree_id, "parent_id": node.get("message_id")}
        answers = [r for r in replies if normalize_role(r.get("role")) == "assistant"]
        if kind == "unpaired":
            for reply in answers:
                label = _votes(reply)
                if label is not None:
                    completion = (_message(reply, source),)
                    meta_r = {**meta, "message_id": reply.get("message_id"), "emojis": reply.get("emojis")}
                    records.append(
                        Record(path, completion=completion, label=label, source=source, meta=meta_r)
                    )
        else:
            ranked = [r for r in answers if isinstance(r.get("rank"), int)]
            if len(ranked) >= 2:
                records.append(
                    Record(
                        path,
                        responses=tuple((_message(r, source),) for r in ranked),
                        ranks=tuple(r["rank"] for r in ranked),
                        source=source,
                        meta={**meta, "message_ids": [r.get("message_id") for r in ranked]},
                    )
                )
        for reply in replies:
            walk(reply, (*path, _message(reply, source)))

    walk(root, (_message(root, source),))
    return records
