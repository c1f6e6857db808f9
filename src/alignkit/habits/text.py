"""Text normalisation shared by the habit rules: one lower-cased, plain-quoted copy, split into sentences.

All rules work on a normalised copy of the text (lower case, typographic quotes
made plain, whitespace runs collapsed inside a line).
"""

from __future__ import annotations

import re


def normalise(text: str) -> str:
    """Lower case, typographic quotes made plain, runs of spaces and tabs collapsed, ends stripped."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"[ \t\u00a0]+", " ", text.lower())
    return text.strip()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(norm: str) -> list[str]:
    """The non-empty sentences of a normalised text (split after . ! ? and at line breaks)."""
    return [s.strip() for s in _SENTENCE_END.split(norm) if s.strip()]
