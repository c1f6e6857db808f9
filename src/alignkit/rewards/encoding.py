"""Text and token encoding for reward models: a prompt and an answer → the ids a reward model scores.

A reward model trained by `alignkit rm` saw each (prompt, answer) rendered through its
tokenizer's chat template (`render_conversation`); scoring text from another tokenizer
(a policy on a different base, best-of-n candidates, evaluation) re-renders and
re-tokenises it the same way (`encode_conversations`), and `tokenizer_fingerprint` says
when that can be skipped because two tokenizers give the same ids. `pad_rows` is the one
right-padding helper for token-id lists (ensembles, rollouts, reward-model batches).

Notation: B rows; T tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from alignkit.data.records import Conversation, Message

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "as_conversation",
    "encode_conversations",
    "pad_rows",
    "render_conversation",
    "template_suffix_ids",
    "tokenizer_fingerprint",
]


def as_conversation(prompt: Conversation | str | Sequence[dict]) -> Conversation:
    """A prompt given as text, a Conversation, or TRL-style ``[{"role", "content"}]`` dicts → Conversation."""
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in prompt)


def render_conversation(tokenizer: PreTrainedTokenizerBase, prompt: Conversation | str, response: str) -> str:
    """Text of prompt + assistant response as a reward model trained by `alignkit rm` saw it.

    The same rendering as the rm trainer's (`alignkit.rewards.comparisons.render`): the chat
    template over the prompt messages plus the assistant turn (ChatML ends it with
    ``<|im_end|>`` and a newline); without a template, the prompt's text, a blank line,
    the response and the EOS token.
    """
    conv = as_conversation(prompt)
    if getattr(tokenizer, "chat_template", None):
        messages = [m.to_dict() for m in conv] + [{"role": "assistant", "content": response}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n\n".join(m.content for m in conv) + "\n\n" + response + (tokenizer.eos_token or "")


def template_suffix_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids the chat template puts after the assistant's end-of-turn token (ChatML: the newline).

    A reward model trained on rendered conversations scores the *last* token of the
    rendering, which for ChatML is that newline, not ``<|im_end|>``: a sampled response
    that ended with EOS gets these ids appended before scoring so that the model sees
    what it was trained on. Empty without a template or when nothing follows EOS.
    """
    eos = tokenizer.eos_token_id
    if eos is None or not getattr(tokenizer, "chat_template", None):
        return []
    text = render_conversation(tokenizer, "x", "y")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if eos not in ids:
        return []
    return list(ids[len(ids) - ids[::-1].index(eos) :])


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Conversation | str],
    responses: Sequence[str],
    finished: Sequence[bool] | None = None,
    max_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Token ids of prompt + assistant response in ``tokenizer``'s own format, right-padded.

    A finished response (it emitted EOS; the default) is the whole rendering of
    :func:`render_conversation`. An unfinished one (cut at the length limit) is cut just
    before the end-of-turn token the template adds, so the reward model scores the last
    token the policy actually wrote -- as the shared-tokenizer path does. Rows longer
    than ``max_length`` lose tokens from the left (the response end is what is scored).

    Returns:
        input_ids, attention_mask: (B, T) long; attention_mask 1 on real tokens.
    """
    rows: list[list[int]] = []
    eos = tokenizer.eos_token_id
    done = list(finished) if finished is not None else [True] * len(responses)
    for prompt, response, ended in zip(prompts, responses, done, strict=True):
        ids = tokenizer(render_conversation(tokenizer, prompt, response), add_special_tokens=False)[
            "input_ids"
        ]
        if not ended and eos is not None and eos in ids:
            ids = ids[: len(ids) - 1 - ids[::-1].index(eos)]  # drop the last end-of-turn and what follows
        if max_length is not None and len(ids) > max_length:
            ids = ids[-max_length:]
        rows.append(list(ids))
    return pad_rows(rows, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token-id lists → right-padded (B, T) ids and a (B, T) long mask, 1 on real tokens.

    T is the longest row, at least 1 (no rows, or only empty ones, give one column of padding).
    """
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), max(width, 1)), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, ids in enumerate(rows):
        if len(ids):
            input_ids[i, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
    return input_ids, attention_mask


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase | None) -> str | None:
    """A hash of what decides token ids and formatting: vocabulary, special ids, chat template.

    Two tokenizers with the same fingerprint turn the same conversation into the same
    ids, so a reward model with the policy's fingerprint can score the policy's ids as
    they are. Cached on the tokenizer object.
    """
    if tokenizer is None:
        return None
    cached = getattr(tokenizer, "_alignkit_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = [tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id]
    digest.update(
        json.dumps([type(tokenizer).__name__, special, getattr(tokenizer, "chat_template", None)]).encode()
    )
    value = digest.hexdigest()
    with contextlib.suppress(AttributeError):  # a tokenizer that refuses new attributes: recompute next time
        tokenizer._alignkit_fingerprint = value
    return value
