"""Files, `datasets` folders and hub names → validated `Record`s.

`load_records` reads one source in a single streaming pass: the first records
decide the format (`alignkit.data.formats.detect_format`), every record is
parsed and validated, and the records are converted to the ``kind`` a caller
asks for (`Record.as_kind`). Every problem is a `DataError` whose message starts
with "FILE:LINE:" (line numbers are 1-based file lines for .jsonl and .csv, where
the header is line 1; "FILE:#INDEX", 0-based, for JSON lists, parquet and
`datasets` rows).

`split_records` splits off an eval set that keeps related records (the pairs
of one ranking, the two halves of one pair) on the same side.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import random
import re
import socket
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from alignkit.data.formats import Format, detect_format, get_format
from alignkit.data.jsonl import json_problem, jsonl_items, text_lines
from alignkit.data.labels import is_label_file, label_items
from alignkit.data.records import KINDS, Record
from alignkit.errors import ConfigError, DataError

Item = tuple[str, Any, "str | None"]  # (source, raw record, reason it is unreadable or None)

DETECT_SAMPLES = 16  # valid raw records that detection looks at
MAX_ERRORS = 20  # without skip_invalid: invalid records collected before giving up
# How the commands with --skip-invalid skip invalid records (the end of the error that lists them).
SKIP_ADVICE = "pass skip_invalid=True (--skip-invalid) to skip invalid records"
_CONTAINER_KEYS = ("train", "data", "examples", "records", "rows")  # where a JSON object keeps its list
_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass
class LoadResult:
    records: list[Record]  # valid records, converted to `kind`
    format: str  # id of the format that parsed them (see `alignkit.data.formats.FORMATS`)
    kind: str  # kind of every record in `records`
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason) of invalid records
    path: str = ""  # the path or hub name as given
    source_kind: str = ""  # kind the data holds before conversion (e.g. "ranking" for OpenAssistant trees)


def load_records(
    path_or_name: str | Path,
    kind: str | None = None,
    format: str | None = None,
    skip_invalid: bool = False,
    split: str | None = None,
    limit: int | None = None,
    fallback_format: str | None = None,
) -> LoadResult:
    """Load a data file, a `datasets.save_to_disk` folder or a hub dataset name.

    Args:
        path_or_name: .jsonl, .json, .csv, .tsv, .parquet (.jsonl/.json/.csv may be
            gzipped), a `save_to_disk` folder, or "owner/name" on the Hugging Face Hub
            (only when no such local path exists).
        kind: convert every record to this kind (one of `KINDS`); None keeps what
            the data holds.
        format: a format id (see `alignkit.data.formats.format_names`) instead of detection.
        skip_invalid: skip invalid records (listed in ``skipped``) instead of raising.
        split: which split of a `DatasetDict` folder, a hub dataset or a JSON object
            holding several lists (default "train").
        limit: stop after this many (converted) records.
        fallback_format: a format id used only when detection cannot tell the format (a command's
            ``--format`` for its eval file, which may hold another format than the training data).

    Raises:
        DataError: "FILE:LINE: what is wrong" for unreadable input, an unknown
            format, or (without ``skip_invalid``) any invalid record; always when
            no valid record is left.
    """
    result, _ = _load(path_or_name, kind, format, skip_invalid, split, limit, fallback_format=fallback_format)
    return result


def _load(
    path_or_name: str | Path,
    kind: str | None,
    format: str | None,
    skip_invalid: bool,
    split: str | None,
    limit: int | None,
    keep_native: bool = False,
    skip_advice: str = SKIP_ADVICE,
    fallback_format: str | None = None,
) -> tuple[LoadResult, list[Record]]:
    """`load_records`, plus (when ``keep_native``) the records as parsed, before conversion.

    ``skip_advice`` ends the error about invalid records: how the caller's command skips them.
    """
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
    fmt = get_format(format) if format else None
    fallback = get_format(fallback_format) if fallback_format and not fmt else None
    name, items, table = _open(path_or_name, split)
    natives: list[Record] = []
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    source_kind: str | None = None
    try:
        head = _head(items)
        if not head:
            raise DataError("the file is empty: no records", name)
        samples = [raw for _, raw, error in head if error is None]
        if not samples:  # nothing readable at all (the head holds the whole file then)
            skipped = [(source, error) for source, _, error in head]
            head = []
        elif fmt is None:
            # CSV/TSV cells are all text: the columns are mapped by name.
            fmt = get_format("columns") if table else _detect(samples, head[0][0], fallback)
        for item in itertools.chain(head, items):
            good, problems = _parse_item(fmt, item, kind, source_kind)  # type: ignore[arg-type]
            skipped.extend(problems)
            if not skip_invalid and len(skipped) >= MAX_ERRORS:
                break
            if good:
                source_kind = good[0].kind
            if keep_native:
                natives.extend(good)
            records.extend(_convert(good, kind, name))
            if limit is not None and len(records) >= limit:
                break
    finally:
        items.close()

    if skipped and not skip_invalid:
        first_source, first_reason = skipped[0]
        others = "" if len(skipped) == 1 else f" ({_more(skipped[1:], len(skipped) >= MAX_ERRORS)})"
        raise DataError(f"{first_reason}{others}; fix the data, or {skip_advice}", first_source)
    if not records:
        if skipped:
            first_source, first_reason = skipped[0]
            first = f"{first_source}: {first_reason}"
            raise DataError(f"no valid records: all {len(skipped)} are invalid (first: {first})", name)
        raise DataError(
            f"no {kind + ' ' if kind else ''}records found in this data (format {fmt.name})", name
        )
    assert fmt is not None and source_kind is not None
    if limit is not None:
        records = records[:limit]
    result = LoadResult(records, fmt.name, kind or source_kind, skipped, str(path_or_name), source_kind)
    return result, natives


def _detect(samples: list[Any], where: str, fallback: Format | None) -> Format:
    """`detect_format`, or ``fallback`` when there is one and detection cannot tell."""
    try:
        return detect_format(samples, where)
    except DataError:
        if fallback is None:
            raise
        return fallback


def _parse_item(
    fmt: Format, item: Item, kind: str | None, source_kind: str | None
) -> tuple[list[Record], list[tuple[str, str]]]:
    """(valid records, (source, reason) of each problem) of one raw record.

    A record of another kind than the ones before it is a problem too: one
    file holds one kind of data.
    """
    source, raw, error = item
    if error is not None:
        return [], [(source, error)]
    try:
        parsed = fmt.parse(raw, source, kind=kind)
    except DataError as e:
        return [], [(e.source or source, e.reason)]
    good, problems = [], []
    for rec in parsed:
        try:
            rec.validate()
            expected = source_kind or (good[0].kind if good else rec.kind)
            if rec.kind != expected:
                raise DataError(f"this record is {rec.kind} data, but the ones before are {expected}", source)
        except DataError as e:
            problems.append((e.source or source, e.reason))
            continue
        good.append(rec)
    return good, problems


def _more(skipped: list[tuple[str, str]], truncated: bool) -> str:
    shown = ", ".join(source for source, _ in skipped[:5])
    count = f"{len(skipped)}{'+' if truncated else ''}"
    return f"and {count} more invalid: {shown}{', ...' if len(skipped) > 5 or truncated else ''}"


def _convert(records: list[Record], kind: str | None, name: str) -> list[Record]:
    if kind is None:
        return records
    out: list[Record] = []
    for rec in records:
        try:
            out.extend(rec.as_kind(kind))
        except DataError as e:
            raise DataError(
                f"this data holds {rec.kind} records, which cannot become {kind}: {e.reason}", name
            ) from None
    return out


def _head(items: Iterator[Item]) -> list[Item]:
    """Items up to and including the DETECT_SAMPLES-th readable one (all of them if fewer)."""
    head, readable = [], 0
    for item in items:
        head.append(item)
        readable += item[2] is None
        if readable >= DETECT_SAMPLES:
            break
    return head


# --------------------------------------------------------------------- opening
def _open(path_or_name: str | Path, split: str | None) -> tuple[str, Iterator[Item], bool]:
    """(name for messages, items, whether it is a CSV/TSV table)."""
    name = str(path_or_name)
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return name, _guard(_datasets_dir_items(path, name, split), name), False
    if path.is_file():
        lower = path.name.lower()
        base = lower[:-3] if lower.endswith(".gz") else lower
        opener = gzip.open if lower.endswith(".gz") else open
        if base.endswith((".jsonl", ".ndjson")):
            # Label files (alignkit label / judge) are append-only event logs: undo rows cancel earlier
            # labels and ties/skips are not training data, so they are read through the store's reader.
            if not lower.endswith(".gz") and is_label_file(path):
                return name, _guard(label_items(path, name), name), False
            return name, _guard(_jsonl_file_items(opener, path, name), name), False
        if base.endswith(".json"):
            return name, _guard(_json_items(opener, path, name, split), name), False
        if base.endswith((".csv", ".tsv")):
            delimiter = "\t" if base.endswith(".tsv") else ","
            return name, _guard(_csv_items(opener, path, name, delimiter), name), True
        if base.endswith(".parquet") and not lower.endswith(".gz"):
            return name, _guard(_parquet_items(path, name), name), False
        raise DataError(
            f"unsupported file type {path.suffix!r}: expected .jsonl, .json, .csv, .tsv "
            "(each may end in .gz), "
            ".parquet, or a folder written by `datasets` save_to_disk",
            name,
        )
    if _HUB_NAME.match(name) and not name.lower().endswith(_SUFFIXES + (".gz",)):
        return name, _guard(_hub_items(name, split), name), False
    raise DataError(f"no such file or directory: {name}")


def _guard(items: Iterator[Item], name: str) -> Iterator[Item]:
    """Turn read failures in the middle of a file (bad gzip, I/O) into a `DataError`."""
    try:
        yield from items
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read the file: {e}", name) from None
    finally:
        items.close()  # type: ignore[attr-defined]


def _jsonl_file_items(opener: Any, path: Path, name: str) -> Iterator[Item]:
    with opener(path, "rb") as stream:
        yield from jsonl_items(stream, name)


def _json_items(opener: Any, path: Path, name: str, split: str | None) -> Iterator[Item]:
    with opener(path, "rb") as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"not valid UTF-8 text (byte offset {e.start}); save the file as UTF-8", f"{name}:{line}"
        ) from None
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # one JSON object per line in a .json file
            yield from jsonl_items(io.BytesIO(data), name)
            return
        raise DataError(json_problem(text, e), f"{name}:{e.lineno}") from None
    for index, raw in enumerate(_json_records(value, name, split)):
        yield f"{name}:#{index}", raw, None


def _json_records(value: Any, name: str, split: str | None) -> list[Any]:
    """The records in a parsed .json file: a list, or a list kept under a key of an object."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        raise DataError(f"expected a list of records or an object, got a {type(value).__name__}", name)
    lists = [k for k, v in value.items() if isinstance(v, list)]
    if split is not None:
        if isinstance(value.get(split), list):
            return value[split]
        raise DataError(
            f"no split {split!r} in this file; lists found under: {', '.join(lists) or 'none'}", name
        )
    try:
        detect_format([value], name)
        return [value]  # the object is itself one record
    except DataError:
        pass
    for key in _CONTAINER_KEYS:
        if isinstance(value.get(key), list):
            return value[key]
    if len(lists) == 1:
        return value[lists[0]]
    raise DataError(
        f"a JSON object with keys {sorted(value)}: expected the records as a list under one of "
        f"{', '.join(_CONTAINER_KEYS)} (or pass split=KEY)",
        name,
    )


def _csv_items(opener: Any, path: Path, name: str, delimiter: str) -> Iterator[Item]:
    csv.field_size_limit(2**31 - 1)  # long answers exceed the 128 KiB default
    bad_lines: dict[int, str] = {}

    def texts(stream: IO[bytes]) -> Iterator[str]:
        for number, text, error in text_lines(stream):
            if error is not None:
                bad_lines[number] = error
            yield text

    with opener(path, "rb") as stream:
        reader = csv.reader(texts(stream), delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return
            if bad_lines:
                raise DataError(bad_lines[min(bad_lines)], f"{name}:{min(bad_lines)}")
            columns = [c.strip() for c in header]
            end = reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num  # a quoted cell may span several lines
                if not any(cell.strip() for cell in row):
                    continue
                source = f"{name}:{start}"
                errors = [bad_lines[n] for n in range(start, end + 1) if n in bad_lines]
                if errors:
                    yield source, None, errors[0]
                elif len(row) != len(columns):
                    yield source, None, f"{len(row)} cells, but the header has {len(columns)} columns"
                else:
                    yield source, dict(zip(columns, row, strict=True)), None
        except csv.Error as e:
            raise DataError(f"malformed CSV: {e}", f"{name}:{reader.line_num}") from None


def _parquet_items(path: Path, name: str) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"not a readable parquet file: {e}", name) from None
    index = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield f"{name}:#{index}", row, None
            index += 1


def _rows(dataset: Iterable[dict[str, Any]], name: str) -> Iterator[Item]:
    for index, row in enumerate(dataset):
        yield f"{name}:#{index}", row, None


def _pick_split(dataset: Any, split: str | None, name: str) -> Any:
    """One split of a `DatasetDict`: ``split``, else "train", else the only one."""
    import datasets

    if not isinstance(dataset, datasets.DatasetDict):
        return dataset
    if split is None and "train" not in dataset and len(dataset) == 1:
        return next(iter(dataset.values()))
    if (split or "train") not in dataset:
        raise DataError(
            f"no split {split or 'train'!r}; splits: {', '.join(dataset)} (pass split=NAME)", name
        )
    return dataset[split or "train"]


def _datasets_dir_items(path: Path, name: str, split: str | None) -> Iterator[Item]:
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise DataError(
            f"{name} is a directory, but not one written by `datasets` save_to_disk (it has no "
            "dataset_dict.json or state.json); pass a data file or such a folder"
        )
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as e:
        raise DataError(f"cannot read this `datasets` folder: {e}", name) from None
    yield from _rows(_pick_split(dataset, split, name), name)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP check, because `datasets` retries an unreachable hub for ~20 s."""
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _hub_items(name: str, split: str | None) -> Iterator[Item]:
    import datasets
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE  # then `datasets` reads its local cache only
    if not offline and not _hub_reachable():
        raise DataError(
            f"{name!r} is not a local path, and the Hugging Face Hub is unreachable: pass the path of a "
            "local file or folder (or set HF_HUB_OFFLINE=1 to use a cached copy)"
        )
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - `datasets` raises many types; all mean "cannot load it"
        where = "in the local cache (HF_HUB_OFFLINE is set)" if offline else "on the Hugging Face Hub"
        raise DataError(f"{name!r} is not a local path, and loading it {where} failed: {e}") from None
    yield from _rows(dataset, name)


# ---------------------------------------------------------------------- splits
def split_records(
    records: list[Record], eval_fraction: float, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split into (train, eval), deterministic for the same records and seed.

    Records of one group stay on the same side: a group is ``meta["group"]``
    (the pairs of one ranking, `Record.to_pairs`) or else the record's source
    (the two unpaired halves of one pair, the rankings of one OpenAssistant tree).
    Eval takes whole groups in a seeded random order until it holds at least
    ``eval_fraction`` of the records; train always keeps at least one group.
    Both sides keep the input order.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    if eval_fraction == 0.0 or not records:
        return list(records), []
    groups: dict[str, list[int]] = {}
    for index, rec in enumerate(records):
        groups.setdefault(str(rec.meta.get("group") or rec.source or f"#{index}"), []).append(index)
    if len(groups) < 2:
        raise DataError(f"cannot split off an eval set: all {len(records)} records belong to one group")
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    target = max(1, round(eval_fraction * len(records)))
    eval_indices: set[int] = set()
    for key in keys[:-1]:  # the last group always stays in train
        if len(eval_indices) >= target:
            break
        eval_indices.update(groups[key])
    train = [r for i, r in enumerate(records) if i not in eval_indices]
    evals = [r for i, r in enumerate(records) if i in eval_indices]
    return train, evals
