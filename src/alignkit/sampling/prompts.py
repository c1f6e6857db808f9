"""Prompts of any accepted form → token ids, truncated from the left when too long (and counted).

Accepted forms: a `Conversation` (tuple of `Message`), a list of ``{"role", "content"}`` dicts, a `Record`
(its prompt), a plain string (one user turn), or a list of token ids (used as is). Conversations and strings
go through ``tokenizer.apply_chat_template(add_generation_prompt=True)`` so the model answers as the
assistant; a tokenizer without a chat template encodes the text itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from alignkit.data.records import Conversation, Message, Record
from alignkit.errors import UserError

logger = logging.getLogger(__name__)

Prompt = Conversation | str | Sequence[int] | Sequence[dict] | Record


def _messages(prompt: Any, index: int) -> list[dict[str, str]] | None:
    """The prompt as chat messages, or None when it is token ids."""
    if isinstance(prompt, Record):
        prompt = prompt.prompt
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Sequence):
        if len(prompt) == 0:
            return None  # no token ids: reported as an empty prompt
        if all(isinstance(m, Message) for m in prompt):
            return [m.to_dict() for m in prompt]
        if all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
            return [{"role": m["role"], "content": m["content"]} for m in prompt]
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return None
    if hasattr(prompt, "tolist"):  # a 1-D tensor or array of ids
        return None
    raise UserError(
        f"prompt {index}: expected a conversation (Message tuple or role/content dicts), a string or a list of "
        f"token ids, got {type(prompt).__name__} {str(prompt)[:60]!r}"
    )


def encode_prompts(
    tokenizer, prompts: Sequence[Prompt], max_prompt_tokens: int | None = None
) -> tuple[list[list[int]], list[int]]:
    """Token ids of each prompt and how many tokens were cut from its left (0 = intact).

    ``max_prompt_tokens``: longer prompts keep their last ``max_prompt_tokens`` tokens (the end of a chat
    prompt, with the assistant header, matters most). Every cut is logged; the counts are returned.
    """
    ids: list[list[int] | None] = []
    texts: dict[int, str] = {}
    for index, prompt in enumerate(prompts):
        messages = _messages(prompt, index)
        if messages is None:
            ids.append([int(t) for t in (prompt.tolist() if hasattr(prompt, "tolist") else prompt)])
            continue
        ids.append(None)
        if getattr(tokenizer, "chat_template", None):
            texts[index] = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            texts[index] = "\n\n".join(m["content"] for m in messages)
    if texts:  # one batched call to the fast tokenizer; the template already holds the special tokens
        with_template = bool(getattr(tokenizer, "chat_template", None))
        order = list(texts)
        encoded = tokenizer([texts[i] for i in order], add_special_tokens=not with_template)["input_ids"]
        for index, tokens in zip(order, encoded, strict=True):
            ids[index] = list(tokens)
    cut: list[int] = []
    for index, tokens in enumerate(ids):
        assert tokens is not None
        if not tokens:
            raise UserError(f"prompt {index} is empty (no tokens); give it some text or token ids")
        extra = len(tokens) - max_prompt_tokens if max_prompt_tokens is not None else 0
        if extra > 0:
            ids[index] = tokens[extra:]
        cut.append(max(extra, 0))
    if any(cut):
        longest = max(c + len(t) for c, t in zip(cut, ids, strict=True))
        logger.warning(
            "%d of %d prompts were longer than %d tokens (longest %d) and lost their first tokens",
            sum(1 for c in cut if c),
            len(ids),
            max_prompt_tokens,
            longest,
        )
    return ids, cut  # type: ignore[return-value]
