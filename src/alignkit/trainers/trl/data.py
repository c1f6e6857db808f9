"""Data for the TRL-backed trainers: our loaders in, fitted to ``--max-length``, a `datasets.Dataset` out.

- `load_train_eval`: our loaders -> validated `Record`s (identical chosen/rejected pairs skipped and
  counted), the eval set from ``--eval-data`` or ``--eval-split``;
- `fit_records`: cut prompts from the left (oldest turns first) so prompt + answer fits ``--max-length``;
  drop, count and report an answer that alone does not fit (answers are never cut silently);
- `to_dataset`: `Record`s -> a `datasets.Dataset` in TRL's conversational format;
- `DataStats`: what happened to the data on the way (reported in report.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alignkit.config import TrainConfig
from alignkit.data.records import Conversation, Message, Record
from alignkit.errors import DataError

IDENTICAL_REASON = "identical"  # the loader's reason for a pair whose chosen equals rejected contains this


@dataclass
class DataStats:
    """What happened to the data on its way to the trainer (reported in report.json)."""

    format: str = ""
    source_kind: str = ""
    identical_skipped: list[str] = field(default_factory=list)  # sources of pairs whose chosen == rejected
    invalid_skipped: list[str] = field(default_factory=list)  # other invalid records (--skip-invalid)
    prompts_cut: int = 0  # prompts shortened from the left to fit max_length
    dropped_long: list[str] = field(default_factory=list)  # records whose answer alone exceeds max_length

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "source_kind": self.source_kind,
            "identical_pairs_skipped": len(self.identical_skipped),
            "invalid_skipped": len(self.invalid_skipped),
            "prompts_cut": self.prompts_cut,
            "dropped_long_answers": len(self.dropped_long),
            "examples_identical": self.identical_skipped[:5],
            "examples_dropped_long": self.dropped_long[:5],
        }


def load_records_for(
    path: str,
    kind: str,
    skip_invalid: bool,
    stats: DataStats,
    format: str | None = None,
    fallback_format: str | None = None,
) -> list[Record]:
    """Records of ``kind`` from ``path``; pairs with chosen == rejected are skipped and counted, always.

    Such a pair carries no preference signal (the loader calls it invalid). Every other invalid record
    stops the run with its FILE:LINE unless ``--skip-invalid``. ``format`` forces the format (--format);
    ``fallback_format`` is used only when detection cannot tell (--eval-data under --format).
    """
    from alignkit.data.load import load_records

    result = load_records(path, kind=kind, format=format, skip_invalid=True, fallback_format=fallback_format)
    others = []
    for source, reason in result.skipped:
        if IDENTICAL_REASON in reason:
            stats.identical_skipped.append(source)
        else:
            others.append((source, reason))
    if others and not skip_invalid:
        source, reason = others[0]
        more = f" (and {len(others) - 1} more invalid records)" if len(others) > 1 else ""
        raise DataError(
            f"{reason}{more}; fix the data or pass --skip-invalid to skip invalid records", source
        )
    stats.invalid_skipped.extend(s for s, _ in others)
    stats.format, stats.source_kind = result.format, result.source_kind
    return result.records


def load_train_eval(cfg: TrainConfig, kind: str) -> tuple[list[Record], list[Record], DataStats]:
    """(train, eval, stats): ``--data`` as ``kind``; eval from ``--eval-data`` or a ``--eval-split`` of it."""
    from alignkit.data.load import split_records

    stats = DataStats()
    assert cfg.data is not None
    train = load_records_for(cfg.data, kind, cfg.skip_invalid, stats, format=cfg.format)
    evals: list[Record] = []
    if cfg.eval_data:
        eval_stats = DataStats()
        evals = load_records_for(
            cfg.eval_data, kind, cfg.skip_invalid, eval_stats, fallback_format=cfg.format
        )
        stats.identical_skipped += eval_stats.identical_skipped
        stats.invalid_skipped += eval_stats.invalid_skipped
    elif cfg.eval_split > 0:
        train, evals = split_records(train, cfg.eval_split, cfg.seed)
    return train, evals, stats


def _answers(record: Record) -> list[Conversation]:
    return record.answers()


def _messages(conv: Sequence[Message]) -> list[dict[str, str]]:
    return [m.to_dict() for m in conv]


def _template_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    """Token ids of a chat through the tokenizer's template, as TRL tokenizes it (``apply_chat_template``)."""
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
    )
    return list(out["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure(tokenizer: Any, prompt: Conversation, answers: Sequence[Conversation]) -> tuple[int, list[int]]:
    """(prompt tokens, tokens of each answer) the way TRL splits prompt+answer (at the common prefix)."""
    prompt_ids = _template_ids(tokenizer, _messages(prompt), True)
    lengths, start = [], len(prompt_ids)
    for answer in answers:
        full = _template_ids(tokenizer, _messages(prompt) + _messages(answer), False)
        cut = _common_prefix(prompt_ids, full)
        start = min(start, cut)
        lengths.append(len(full) - cut)
    return start, lengths


def _cut_left(tokenizer: Any, text: str, drop_tokens: int) -> str:
    """``text`` without its first ``drop_tokens`` tokens (the newest words are kept)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[min(len(ids), drop_tokens) :], skip_special_tokens=False)


def fit_prompt(tokenizer: Any, record: Record, max_length: int) -> tuple[Record | None, bool]:
    """(record that fits ``max_length``, whether its prompt was cut); None when an answer alone cannot fit.

    Length rule (`TrainConfig.max_length`): prompt + longest answer must fit. The prompt loses its oldest
    turns first (a leading system turn and the last turn stay), then the first tokens of its oldest
    remaining turn. A record whose answer needs more than ``max_length`` minus a minimal prompt is dropped
    (and counted by the caller), never cut.
    """
    prompt_len, answer_lens = measure(tokenizer, record.prompt, _answers(record))
    longest = max(answer_lens)
    if prompt_len + longest <= max_length:
        return _with_tokens(record, record.prompt, prompt_len + longest), False
    minimal = measure(tokenizer, (Message("user", "?"),), [])[0]  # the template's own tokens
    if longest + minimal + 1 > max_length:
        return None, False
    turns = list(record.prompt)
    keep_head = 1 if turns and turns[0].role == "system" else 0
    for _ in range(8):  # each pass removes what overflows; re-measuring handles template changes
        overflow = measure(tokenizer, tuple(turns), [])[0] + longest - max_length
        if overflow <= 0:
            return _with_tokens(record, tuple(turns), max_length + overflow), True
        while len(turns) > keep_head + 1 and overflow > 0:
            gone = turns.pop(keep_head)
            overflow -= len(tokenizer(gone.content, add_special_tokens=False)["input_ids"]) + 4
        if overflow > 0:
            first = turns[keep_head]
            turns[keep_head] = Message(first.role, _cut_left(tokenizer, first.content, overflow + 1))
    tokens = measure(tokenizer, tuple(turns), [])[0] + longest
    if tokens <= max_length:
        return _with_tokens(record, tuple(turns), tokens), True
    return None, False


def _with_tokens(record: Record, prompt: Conversation, tokens: int) -> Record:
    """``record`` with ``prompt`` and ``meta["tokens"]`` (its longest sequence); a fresh meta dict, since
    records made from one source record (`Record.to_unpaired`) share theirs."""
    return replace(record, prompt=prompt, meta={**record.meta, "tokens": tokens})


def fit_records(tokenizer: Any, records: Sequence[Record], max_length: int, stats: DataStats) -> list[Record]:
    """`fit_prompt` over ``records``: counts cut prompts, drops (and lists) answers longer than the budget."""
    kept = []
    for record in records:
        fitted, cut = fit_prompt(tokenizer, record, max_length)
        if fitted is None:
            stats.dropped_long.append(record.source)
            continue
        stats.prompts_cut += int(cut)
        kept.append(fitted)
    return kept


def to_dataset(records: Sequence[Record], kind: str):
    """A `datasets.Dataset` in TRL's conversational format for ``kind``.

    preference -> prompt, chosen, rejected; unpaired -> prompt, completion, label; sft -> prompt,
    completion (TRL's prompt-completion format, so the loss covers the completion only). Each field is a
    list of ``{"role", "content"}`` messages. ``length`` (tokens of the longest sequence a record makes,
    from `fit_prompt`) lets the trainer batch records of similar length together.
    """
    from datasets import Dataset

    columns: dict[str, list[Any]] = {"prompt": [_messages(r.prompt) for r in records]}
    if records and all("tokens" in r.meta for r in records):
        columns["length"] = [int(r.meta["tokens"]) for r in records]
    if kind == "preference":
        columns["chosen"] = [_messages(r.chosen) for r in records]  # type: ignore[arg-type]
        columns["rejected"] = [_messages(r.rejected) for r in records]  # type: ignore[arg-type]
    elif kind in ("unpaired", "sft"):
        columns["completion"] = [_messages(r.completion) for r in records]  # type: ignore[arg-type]
        if kind == "unpaired":
            columns["label"] = [bool(r.label) for r in records]
    else:
        raise ValueError(f"no TRL dataset format for {kind} records")
    return Dataset.from_dict(columns)
