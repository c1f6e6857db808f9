"""Source formats: one small parser per format, and detection from a record's keys.

A parser takes one raw record (a JSON object, or a string) and its source
("FILE:LINE") and returns `Record`s: usually one, none or several for an
OpenAssistant tree. Parsers raise `DataError` naming the field; the loader
validates every record afterwards. ``kind`` is a hint for the few formats
whose records depend on what is asked for (OpenAssistant trees give rankings
or, for ``kind="unpaired"``, emoji-labelled answers; prompt sets give their
reference answer as a completion only for ``kind="sft"``).

Detection looks at the keys of the first valid records and takes the format
most of them match; `FORMATS` is in priority order (most specific first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alignkit.data.formats.columns import answer_columns, has_prompt_column, parse_columns
from alignkit.data.formats.completion import parse_sharegpt, parse_trl_sft, parse_trl_unpaired
from alignkit.data.formats.oasst import is_oasst_tree, parse_oasst_tree
from alignkit.data.formats.paired import (
    looks_like_hh,
    parse_hh_rlhf,
    parse_ranking,
    parse_stack_exchange,
    parse_trl_preference,
)
from alignkit.data.formats.prompts import (
    parse_instruction,
    parse_mt_bench,
    parse_prompt_string,
    parse_question,
    parse_trl_prompt,
)
from alignkit.data.records import Record
from alignkit.errors import ConfigError, DataError

Parser = Callable[..., list[Record]]  # (raw, source, kind=None) -> list[Record]


@dataclass(frozen=True)
class Format:
    name: str  # the id users pass as ``format=`` / ``--format``
    shape: str  # one line: what a record looks like (for errors and docs)
    detect: Callable[[Any], bool]  # does this raw record look like the format?
    parser: Parser

    def parse(self, raw: Any, source: str, kind: str | None = None) -> list[Record]:
        """Records from one raw record; `DataError` (naming ``source``) if it does not fit."""
        if self.name != "prompt-string" and not isinstance(raw, Mapping):
            raise DataError(
                f"expected a JSON object ({self.name}: {self.shape}), got {_describe(raw)}", source
            )
        try:
            return self.parser(raw, source, kind=kind)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:
            # A field of an unexpected type deep inside a record: still the user's data, not a crash.
            raise DataError(
                f"cannot read this record as {self.name}: {type(e).__name__}: {e}", source
            ) from None


def _has(*names: str) -> Callable[[Any], bool]:
    return lambda raw: isinstance(raw, Mapping) and all(n in raw for n in names)


def _is_hh(raw: Any) -> bool:
    return _has("chosen", "rejected")(raw) and "prompt" not in raw and looks_like_hh(raw["chosen"])


def _is_trl_preference(raw: Any) -> bool:
    # Without a prompt, chosen/rejected must be whole conversations (TRL's implicit prompt);
    # other prompt columns ("question", "instruction") are mapped by the columns format.
    return _has("chosen", "rejected")(raw) and ("prompt" in raw or isinstance(raw["chosen"], list))


def _is_sharegpt(raw: Any) -> bool:
    return _has("conversations")(raw) or _has("messages", "label")(raw)


def _is_trl_sft(raw: Any) -> bool:
    return _has("prompt", "completion")(raw) or _has("messages")(raw)


def _prompt_set(key: str, answers: set[str]) -> Callable[[Any], bool]:
    """A prompt set keyed by ``key`` whose only answer columns are ``answers`` (its reference).

    Rows with other answer columns (e.g. {"question", "chosen", "rejected"}) are left to
    the columns format, which maps them all.
    """
    return lambda raw: _has(key)(raw) and answer_columns(raw) <= answers


FORMATS: tuple[Format, ...] = (
    Format(
        "prompt-string",
        "one JSON string per line: the prompt",
        lambda r: isinstance(r, str),
        parse_prompt_string,
    ),
    Format(
        "oasst-tree",
        '{"prompt": {"text", "role", "replies": [...]}} (OpenAssistant trees)',
        lambda r: isinstance(r, Mapping) and is_oasst_tree(r),
        parse_oasst_tree,
    ),
    Format(
        "ranking",
        '{"prompt", "responses": [...], "ranks": [...]} (0 = best)',
        _has("responses", "ranks"),
        parse_ranking,
    ),
    Format(
        "sharegpt",
        '{"conversations": [{"from", "value"}], "chosen"?, "rejected"?} or {"messages", "label"}',
        _is_sharegpt,
        parse_sharegpt,
    ),
    Format(
        "hh-rlhf",
        '{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}',
        _is_hh,
        parse_hh_rlhf,
    ),
    Format(
        "trl-preference",
        '{"prompt"?, "chosen", "rejected", "margin"?} (text or messages)',
        _is_trl_preference,
        parse_trl_preference,
    ),
    Format(
        "stack-exchange-paired",
        '{"question", "response_j" (preferred), "response_k"}',
        _has("question", "response_j", "response_k"),
        parse_stack_exchange,
    ),
    Format(
        "trl-unpaired",
        '{"prompt", "completion", "label": true/false}',
        _has("prompt", "completion", "label"),
        parse_trl_unpaired,
    ),
    Format(
        "trl-sft",
        '{"prompt", "completion"} or {"messages": [{"role", "content"}]}',
        _is_trl_sft,
        parse_trl_sft,
    ),
    Format(
        "mt-bench",
        '{"question_id", "category", "turns": [...]} (first turn = prompt)',
        _has("turns"),
        parse_mt_bench,
    ),
    Format(
        "instruction",
        '{"instruction", "input"?, "output"?} or {"instruction", "instances": [...]}',
        _prompt_set("instruction", {"output", "response"}),
        parse_instruction,
    ),
    Format("question", '{"question", "answer"?}', _prompt_set("question", {"answer"}), parse_question),
    Format("trl-prompt", '{"prompt": text or messages}', _prompt_set("prompt", set()), parse_trl_prompt),
    Format(
        "columns",
        "flat rows (CSV): columns mapped by name (prompt/question, chosen/rejected, completion, label)",
        has_prompt_column,
        parse_columns,
    ),
)
_BY_NAME = {f.name: f for f in FORMATS}
_ALIASES = {
    "csv": "columns",
    "tsv": "columns",
    "hh": "hh-rlhf",
    "oasst": "oasst-tree",
    "stack-exchange": "stack-exchange-paired",
}


def format_names() -> list[str]:
    return [f.name for f in FORMATS]


def describe_formats() -> str:
    return "\n".join(f"  {f.name}: {f.shape}" for f in FORMATS)


def get_format(name: str) -> Format:
    """The format called ``name`` (or an alias such as "csv"); `ConfigError` listing them if unknown."""
    fmt = _BY_NAME.get(_ALIASES.get(name, name))
    if fmt is None:
        raise ConfigError(f"unknown data format {name!r}; known formats:\n{describe_formats()}")
    return fmt


def detect_format(samples: Sequence[Any], where: str) -> Format:
    """The format most of ``samples`` (the first valid raw records) match, first in `FORMATS` on a tie.

    Raises `DataError` naming ``where`` (the file), the keys it saw and the known formats.
    """
    votes: Counter[str] = Counter()
    for raw in samples:
        match = next((f for f in FORMATS if f.detect(raw)), None)
        if match is not None:
            votes[match.name] += 1
    if not votes:
        seen = _describe(samples[0]) if samples else "no records"
        raise DataError(
            f"cannot tell the data format: the first record is {seen}. Known formats:\n{describe_formats()}\n"
            "Rename the fields to one of these, or pass format=NAME (--format NAME).",
            where,
        )
    order = format_names()
    best = max(votes, key=lambda name: (votes[name], -order.index(name)))
    return _BY_NAME[best]


def _describe(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return f"an object with keys {sorted(map(str, raw))}"
    return f"a {type(raw).__name__}"


__all__ = ["FORMATS", "Format", "describe_formats", "detect_format", "format_names", "get_format"]
