"""Reading JSON lines: text lines checked for UTF-8, one record per line, and why a line is not JSON.

Used by `alignkit.data.load` for .jsonl files (and .json files holding one object per line); a
record cut short gets "not complete JSON (truncated?)" instead of the parser's last words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any


def text_lines(stream: IO[bytes]) -> Iterator[tuple[int, str, str | None]]:
    """(1-based line number, text, reason if not UTF-8) of each line; bad bytes are replaced."""
    offset = 0
    for number, data in enumerate(stream, 1):
        try:
            text, error = data.decode("utf-8"), None
        except UnicodeDecodeError as e:
            text = data.decode("utf-8", errors="replace")
            error = (
                f"not valid UTF-8 text (byte offset {offset + e.start} in the file); save the file as UTF-8"
            )
        if number == 1:
            text = text.removeprefix("\ufeff")  # byte-order mark
        offset += len(data)
        yield number, text, error


def jsonl_items(stream: IO[bytes], name: str) -> Iterator[tuple[str, Any, str | None]]:
    """("NAME:LINE", the parsed record or None, the reason it is unreadable or None) of each non-blank line."""
    for number, text, error in text_lines(stream):
        source = f"{name}:{number}"
        if error is not None:
            yield source, None, error
        elif text.strip():
            try:
                yield source, json.loads(text), None
            except json.JSONDecodeError as e:
                yield source, None, json_problem(text, e)


# What may stand at the end of a line cut short: part of true/false/null or of a number.
PARTIAL_VALUE = re.compile(r"t(?:ru?)?|f(?:a(?:ls?)?)?|n(?:ul?)?|-?[0-9]*\.?[0-9]*(?:[eE][+-]?)?[0-9]*")


def json_problem(text: str, e: json.JSONDecodeError) -> str:
    """Why ``text`` is not JSON: "not complete JSON (truncated?)" when it stops in the middle, else the parser's words.

    A record cut short (a file whose writing stopped, a record broken over two lines) makes the parser fail
    at its very end, e.g. with "Invalid control character" at the newline inside an open string; saying
    so points at the cause instead of at a column. An error anywhere before the end keeps its own words.
    """
    tail = text.rstrip()[e.pos :]  # what follows the error; nothing when it is at the end
    if e.msg.startswith(("Unterminated string", "Invalid control character")):
        incomplete, where = e.msg.startswith("Unterminated") or not tail, "inside a string"
    elif e.msg.startswith("Invalid \\"):  # an escape cut short: a lone backslash or \u12 at the end
        incomplete, where = '"' not in tail, "inside a string"
    else:  # at the end, or in a value cut short there (tr, fals, 12., -)
        partial = e.msg.startswith("Expecting") and PARTIAL_VALUE.fullmatch(tail) is not None
        incomplete, where = not tail or partial, "before it is closed"
    if incomplete:
        return (
            f"not complete JSON (truncated?): the record stops {where} (the file cut off while it was "
            "written, or a record broken over two lines)"
        )
    return f"malformed JSON: {e.msg} (column {e.colno})"
