"""Candidates to judge: a prompt with two or more answers, from any file alignkit reads.

An `Item` is one prompt and its distinct answers. Two sources:

* the output of `alignkit sample` (one JSON object per line with ``prompt`` and ``candidates``, each a
  string or an object with ``text``), read here;
* any preference or ranking file the loaders read (`alignkit.data.load.load_records`): a pair gives two
  answers, a ranking gives its K answers. The existing preference is *not* shown to the person.

``item_id`` is a stable hash of the prompt and the set of answers (their order does not matter), so the
same item has the same id in any file, for any annotator. The dataset fingerprint is a hash of the sorted
item ids; the label store uses it to refuse mixing labels of two datasets in one file.

Answer order is shuffled per item with a seeded generator (``seed`` and ``item_id``; on the web page also
the annotator): `shown_order`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.formats._common import to_conversation, with_system
from alignkit.data.records import Conversation, Message
from alignkit.errors import DataError

CANDIDATE_TEXT_KEYS = ("text", "completion", "response", "content")


@dataclass(frozen=True)
class Item:
    item_id: str  # stable hash of prompt + the set of answers
    prompt: Conversation
    answers: tuple[Conversation, ...]  # distinct answers, in the file's order
    source: str  # "FILE:LINE" of the record it came from


@dataclass(frozen=True)
class Candidates:
    items: list[Item]
    dataset: str  # fingerprint: hash of the sorted item ids
    format: str  # "sample" or the loader's format id
    notes: list[str]  # what was dropped and why (duplicates, fewer than 2 distinct answers)


def conv_json(conv: Conversation) -> list[dict[str, str]]:
    return [m.to_dict() for m in conv]


def conv_from_json(value: Any) -> Conversation:
    """Read back a conversation written by `conv_json` (a list of {"role", "content"})."""
    return tuple(Message(str(m["role"]), str(m["content"])) for m in value)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def answer_hash(conv: Conversation | list[dict[str, str]]) -> str:
    """Short content hash of one answer (used to compare judgements across annotators)."""
    data = conv if isinstance(conv, list) else conv_json(conv)
    return _digest(data)[:16]


def make_item_id(prompt: Conversation, answers: tuple[Conversation, ...]) -> str:
    return _digest({"prompt": conv_json(prompt), "answers": sorted(_digest(conv_json(a)) for a in answers)})[
        :16
    ]


def dataset_fingerprint(item_ids: list[str]) -> str:
    return _digest(sorted(set(item_ids)))[:16]


def shown_order(item: Item, seed: int, k: int | None = None, annotator: str | None = None) -> tuple[int, ...]:
    """Indexes into ``item.answers`` in the order shown (the first ``k``); the same for the same seed.

    With ``annotator`` (the web page) each annotator gets an order of their own, so that two people judging
    one item do not see the same answer first: position bias then averages out of the majority vote.
    """
    order = list(range(len(item.answers)))
    key = f"{seed}:{item.item_id}" if annotator is None else f"{seed}:{annotator}:{item.item_id}"
    random.Random(key).shuffle(order)  # str seeds are stable across processes
    return tuple(order[:k] if k else order)


# ------------------------------------------------------------------------------------------ reading
def load_candidates(path: str | Path, skip_invalid: bool = False, format: str | None = None) -> Candidates:
    """Items with at least two distinct answers from ``path`` (see the module docstring).

    ``format`` (--format) reads ``path`` with the loaders as that format, even when it looks like
    `alignkit sample` output. Raises `DataError` (FILE:LINE) for unreadable records, or when no item
    has two answers.
    """
    name, local = str(path), Path(path).expanduser()
    if format is None and local.is_file() and _is_sample_output(local):
        return _finish(list(_sample_items(local, name, skip_invalid)), "sample", name)
    return _from_records(
        name, skip_invalid, format
    )  # any other file, folder or hub name: the loaders say what is wrong


def _from_records(name: str, skip_invalid: bool, format: str | None = None) -> Candidates:
    from alignkit.data.load import load_records

    result = load_records(name, format=format, skip_invalid=skip_invalid)
    if result.kind not in ("preference", "ranking"):
        raise DataError(
            f"this file holds {result.kind} records (format {result.format}); labelling needs a prompt with two "
            "or more answers: the output of `alignkit sample`, or a preference or ranking file",
            name,
        )
    raw_items = [(rec.source, rec.prompt, tuple(rec.answers())) for rec in result.records]
    cands = _finish(raw_items, result.format, name)
    if result.skipped:
        cands.notes.insert(
            0,
            f"{len(result.skipped)} invalid records skipped (first: {result.skipped[0][0]}: "
            f"{result.skipped[0][1]})",
        )
    return cands


def _finish(
    raw_items: list[tuple[str, Conversation, tuple[Conversation, ...]]], fmt: str, name: str
) -> Candidates:
    items: list[Item] = []
    seen: set[str] = set()
    duplicates = few = 0
    first_few = ""
    for source, prompt, answers in raw_items:
        distinct = tuple(dict.fromkeys(answers))  # drop repeated answers, keep order
        if len(distinct) < 2:
            few += 1
            first_few = first_few or source
            continue
        item_id = make_item_id(prompt, distinct)
        if item_id in seen:
            duplicates += 1
            continue
        seen.add(item_id)
        items.append(Item(item_id, prompt, distinct, source))
    notes = []
    if few:
        notes.append(f"{few} records with fewer than two distinct answers left out (first: {first_few})")
    if duplicates:
        notes.append(f"{duplicates} repeated items (same prompt and answers) left out")
    if not items:
        raise DataError("no item with a prompt and two or more distinct answers", name)
    return Candidates(items, dataset_fingerprint([i.item_id for i in items]), fmt, notes)


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _is_sample_output(path: Path) -> bool:
    """Does the first record hold ``candidates`` (what `alignkit sample` writes)?"""
    base = path.name.lower().removesuffix(".gz")
    if not base.endswith((".jsonl", ".ndjson", ".json")):
        return False
    try:
        with _open_bytes(path) as f:
            for line in f:
                text = line.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
                if not text:
                    continue
                if text.startswith("["):  # a JSON list: look at its first element
                    return _first_of_json_list(path)
                try:
                    first = json.loads(text)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, Mapping) and "candidates" in first
    except OSError:
        return False
    return False


def _first_of_json_list(path: Path) -> bool:
    try:
        with _open_bytes(path) as f:
            value = json.loads(f.read().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(value, list) and bool(value) and isinstance(value[0], Mapping) and "candidates" in value[0]
    )


def _sample_rows(path: Path, name: str) -> Iterator[tuple[str, Any, str | None]]:
    """(source, raw, error) of each record of a .jsonl or .json sampler file."""
    with _open_bytes(path) as f:
        data = f.read()
    text = data.decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON: {e.msg} (column {e.colno})", f"{name}:{e.lineno}") from None
        for index, raw in enumerate(value):
            yield f"{name}:#{index}", raw, None
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", json.loads(line), None
        except json.JSONDecodeError as e:
            yield f"{name}:{number}", None, f"malformed JSON: {e.msg} (column {e.colno})"


def _sample_items(path: Path, name: str, skip_invalid: bool):
    for source, raw, error in _sample_rows(path, name):
        try:
            if error is not None:
                raise DataError(error, source)
            yield _parse_sample_record(raw, source)
        except DataError:
            if not skip_invalid:
                raise
            continue


def _parse_sample_record(raw: Any, source: str) -> tuple[str, Conversation, tuple[Conversation, ...]]:
    if not isinstance(raw, Mapping):
        raise DataError(
            f"expected a JSON object with 'prompt' and 'candidates', got {type(raw).__name__}", source
        )
    if raw.get("prompt") is None:
        raise DataError("field 'prompt' is missing", source)
    prompt = with_system(to_conversation(raw["prompt"], "prompt", source, "user"), raw.get("system"))
    cands = raw.get("candidates")
    if not isinstance(cands, list):
        raise DataError(
            "field 'candidates' must be a list of answers (strings or objects with 'text')", source
        )
    answers = []
    for i, cand in enumerate(cands):
        answers.append(_candidate(cand, f"candidates[{i}]", source))
    return source, prompt, tuple(answers)


def _candidate(cand: Any, name: str, source: str) -> Conversation:
    if isinstance(cand, str):
        return (Message("assistant", cand),)
    if isinstance(cand, Mapping):
        for key in CANDIDATE_TEXT_KEYS:
            value = cand.get(key)
            if isinstance(value, str):
                return (Message("assistant", value),)
            if isinstance(value, list):  # a multi-turn answer as messages
                return to_conversation(value, f"{name}.{key}", source, "assistant")
        raise DataError(f"{name}: an object candidate needs a 'text' field, got keys {sorted(cand)}", source)
    if isinstance(cand, list):
        return to_conversation(cand, name, source, "assistant")
    raise DataError(f"{name}: expected text or an object with 'text', got {type(cand).__name__}", source)
