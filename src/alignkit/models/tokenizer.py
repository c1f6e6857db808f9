"""Tokenizer fixes shared by every loader: a pad token that is not EOS, and a checked padding side.

:func:`fix_pad_token` is applied to every tokenizer alignkit loads (:func:`alignkit.models.registry.load_tokenizer`,
:func:`alignkit.models.default.gguf_tokenizer`), so masks built from ``pad_token_id`` never hide the real
end-of-turn token.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from alignkit.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# SmolLM2 uses <|im_end|> as EOS (and the GGUF also as pad); <|endoftext|> is free to pad with.
PAD_TOKEN = "<|endoftext|>"


def fix_pad_token(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """Give ``tokenizer`` a pad token that is not EOS; return a note when one had to be chosen.

    Padding with EOS would mask or drop the real end-of-turn token when masks are built from ``pad_token_id``
    (and HF sequence classifiers would score the wrong token). Order of choice: ``<|endoftext|>`` when in the
    vocab, else an existing unk/bos token that is not EOS, else a new ``<|pad|>`` token (then the model's
    embedding table must grow: :func:`alignkit.models.registry.load_model` does that).
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != eos:
        return None
    vocab = tokenizer.get_vocab()
    if vocab.get(PAD_TOKEN) is not None and vocab[PAD_TOKEN] != eos:
        tokenizer.pad_token = PAD_TOKEN
        return None
    for token, token_id in (
        (tokenizer.unk_token, tokenizer.unk_token_id),
        (tokenizer.bos_token, tokenizer.bos_token_id),
    ):
        if token is not None and token_id is not None and token_id != eos:
            tokenizer.pad_token = token
            return f"pad token set to {token!r} (id {token_id})"
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    note = f"added a new pad token '<|pad|>' (id {tokenizer.pad_token_id}); the embedding table is resized"
    logger.warning(note)
    return note


def _check_padding_side(side: str) -> str:
    if side not in ("left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', not {side!r}")
    return side
