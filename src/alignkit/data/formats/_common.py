"""Helpers every parser shares: reading fields, building conversations, splitting dialogues.

Every helper raises `DataError` naming the field and the record's ``source``
("FILE:LINE"), so a parser never has to build its own error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alignkit.data.records import Conversation, Message
from alignkit.errors import DataError

# Speaker names seen in public data, mapped to our three roles. Anything else is
# kept as written, and `Record.validate` names it as an unknown role.
_ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "prompter": "user",  # OpenAssistant
    "assistant": "assistant",
    "gpt": "assistant",  # ShareGPT / LLaMA-Factory
    "bot": "assistant",
    "model": "assistant",  # Gemini-style
    "chatgpt": "assistant",
    "system": "system",
}


def normalize_role(role: Any) -> str:
    return _ROLE_NAMES.get(str(role).strip().lower(), str(role))


def require(raw: Mapping[str, Any], name: str, source: str) -> Any:
    """The value of field ``name``; missing or null is an error that names the field."""
    value = raw.get(name)
    if value is None:
        raise DataError(f"field '{name}' is missing", source)
    return value


def require_text(raw: Mapping[str, Any], name: str, source: str) -> str:
    value = require(raw, name, source)
    if not isinstance(value, str):
        raise DataError(f"field '{name}' must be text, got {type(value).__name__}", source)
    return value


def extra_fields(raw: Mapping[str, Any], used: set[str] | tuple[str, ...]) -> dict[str, Any]:
    """Fields a parser did not consume; they travel in `Record.meta`."""
    return {k: v for k, v in raw.items() if k not in used}


def parse_bool(value: Any, name: str, source: str) -> bool | None:
    """A label: true/false, 1/0, "yes"/"no" (CSV cells are text). Empty gives None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in ("true", "1", "yes", "y", "t"):
        return True
    if text in ("false", "0", "no", "n", "f"):
        return False
    raise DataError(f"field '{name}' must be true or false, got {value!r}", source)


def parse_margin(raw: Mapping[str, Any], source: str) -> float | None:
    value = raw.get("margin")
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"field 'margin' must be a number, got {value!r}", source) from None


def _content(value: Any, name: str, source: str) -> str:
    if isinstance(value, str):
        return value
    # OpenAI-style content parts: [{"type": "text", "text": ...}, ...]
    if isinstance(value, list) and all(isinstance(p, Mapping) and "text" in p for p in value):
        return "".join(str(p["text"]) for p in value)
    raise DataError(f"{name}: message content must be text, got {type(value).__name__}", source)


def to_message(value: Any, name: str, source: str, default_role: str) -> Message:
    """One message from ``{"role", "content"}``, ``{"from", "value"}`` or plain text."""
    if isinstance(value, str):
        return Message(default_role, value)
    if not isinstance(value, Mapping):
        raise DataError(
            f"{name}: expected a message (an object with role and content), got {value!r}", source
        )
    role = value.get("role", value.get("from"))
    content = next((value[k] for k in ("content", "value", "text") if k in value), None)
    if role is None or content is None:
        raise DataError(
            f"{name}: a message needs 'role' and 'content' (or 'from' and 'value'), got keys {sorted(value)}",
            source,
        )
    return Message(normalize_role(role), _content(content, name, source))


def to_conversation(value: Any, name: str, source: str, default_role: str) -> Conversation:
    """A conversation from text (one message of ``default_role``), one message, or a list of them."""
    if value is None:
        raise DataError(f"field '{name}' is missing", source)
    if isinstance(value, (str, Mapping)):
        return (to_message(value, name, source, default_role),)
    if isinstance(value, (list, tuple)):
        return tuple(to_message(m, f"{name}[{i}]", source, default_role) for i, m in enumerate(value))
    raise DataError(f"field '{name}' must be text or a list of messages, got {type(value).__name__}", source)


def split_shared_prefix(
    first: Conversation, second: Conversation, source: str
) -> tuple[Conversation, Conversation, Conversation]:
    """Split two full dialogues into (prompt, first answer, second answer).

    The prompt is the longest run of whole turns both dialogues share, cut back
    so that it ends with a user turn; each answer is the rest of its dialogue.
    Usually the two part at the final assistant turn (one-message answers);
    real data also parts earlier, which gives multi-turn answers. Two identical
    dialogues give identical answers, which `Record.validate` rejects.
    """
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    while shared > 0 and first[shared - 1].role != "user":
        shared -= 1
    if shared == 0:
        raise DataError("the two dialogues share no user turn, so there is no common prompt", source)
    return first[:shared], first[shared:], second[shared:]


def split_last_answer(conv: Conversation, name: str, source: str) -> tuple[Conversation, Conversation]:
    """(prompt, completion) of a whole conversation: the completion is its last assistant turn."""
    if not conv or conv[-1].role != "assistant":
        last = conv[-1].role if conv else "nothing"
        raise DataError(
            f"field '{name}': the conversation must end with an assistant turn, it ends with {last}", source
        )
    return conv[:-1], conv[-1:]


def with_system(conv: Conversation, system: Any) -> Conversation:
    """Put a separate ``system`` field in front, unless the conversation has one already."""
    if not isinstance(system, str) or not system.strip() or (conv and conv[0].role == "system"):
        return conv
    return (Message("system", system), *conv)
