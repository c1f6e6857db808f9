"""What a data file holds, and what is odd about it: `alignkit data inspect`.

`inspect_data` loads a file (skipping invalid records by default) and reports
counts, prompt and answer lengths, and data-quality notes with the lines they
concern: empty final answers, dialogues that part before their last turn,
identical pairs, rankings with ties, and every other skipped record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.load import _load
from alignkit.data.records import Record, text_of

SAMPLE_CHARS = 300  # strings in the sample record are cut to this length
TOKENIZE_BATCH = 512
_SHOWN_PLACES = 20  # places listed in one note


def inspect_data(
    path: str | Path,
    kind: str | None = None,
    format: str | None = None,
    skip_invalid: bool = True,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """A JSON-ready report on a data file.

    Keys: ``path``, ``format``, ``kind``, ``source_kind`` (what the file holds before
    conversion), ``records``, ``pairs`` (preference and ranking data), ``rankings``,
    ``labels`` (unpaired: desirable / undesirable counts), ``skipped``,
    ``skipped_reasons`` (every one, as ``{source, reason}``), ``length_unit`` ("tokens"
    with a tokenizer, else whitespace "words"), ``lengths`` (``prompt_tokens`` and
    ``response_tokens``, each ``{min, mean, p50, p95, max}``; response = every answer
    a record holds), ``findings`` (category → sources), ``notes`` (one line per
    finding, with line numbers) and ``sample`` (the first record, long strings cut).

    Findings are computed on the records as the file holds them (before ``kind``
    conversion); counts and lengths on the converted records.
    """
    # inspect skips invalid records unless --strict: its advice names that option, not --skip-invalid
    advice = "leave out --strict (skip_invalid=True) to skip and list invalid records"
    result, natives = _load(
        path, kind, format, skip_invalid, None, None, keep_native=True, skip_advice=advice
    )
    records = result.records
    findings = _findings(natives, result.skipped)
    report: dict[str, Any] = {
        "path": str(path),
        "format": result.format,
        "kind": result.kind,
        "source_kind": result.source_kind,
        "records": len(records),
    }
    if result.kind == "preference":
        report["pairs"] = len(records)
    elif result.kind == "ranking":
        report["rankings"] = len(records)
        report["pairs"] = sum(len(r.to_pairs()) for r in records)
    elif result.kind == "unpaired":
        report["labels"] = {
            "desirable": sum(bool(r.label) for r in records),
            "undesirable": sum(not r.label for r in records),
        }
    count = _counter(tokenizer)
    report.update(
        skipped=len(result.skipped),
        skipped_reasons=[{"source": s, "reason": r} for s, r in result.skipped],
        length_unit="tokens" if tokenizer is not None else "words",
        lengths={
            "prompt_tokens": _stats(count([text_of(r.prompt) for r in records])),
            "response_tokens": _stats(count([text_of(a) for r in records for a in r.answers()])),
        },
        findings=findings,
        notes=_notes(findings, result.skipped, result.source_kind, str(path)),
        sample=_truncate(records[0].to_dict()),
    )
    return report


# -------------------------------------------------------------------- findings
def _findings(records: Sequence[Record], skipped: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Category → sources of the records it concerns (each record counted once per category)."""
    found: dict[str, list[str]] = {
        "empty_final_answer": [],
        "multi_turn_answer": [],
        # Record.validate's reason for chosen == rejected.
        "identical_pair": [s for s, reason in skipped if "chosen and rejected are identical" in reason],
        "ranking_ties": [],
    }
    for rec in records:
        answers = rec.answers()
        if any(a and a[-1].role == "assistant" and not a[-1].content.strip() for a in answers):
            found["empty_final_answer"].append(rec.source)
        if any(len(a) > 1 for a in answers):
            found["multi_turn_answer"].append(rec.source)
        if rec.ranks is not None and len(set(rec.ranks)) < len(rec.ranks):
            found["ranking_ties"].append(rec.source)
    return found


_NOTES = {
    "empty_final_answer": "with an empty final answer (loaded: saying nothing is a real answer)",
    "multi_turn_answer": "whose dialogues part before the last turn (loaded: the shared turns are the "
    "prompt, the rest are multi-turn answers)",
    "identical_pair": "with identical chosen and rejected answers (no preference signal: skipped)",
    "ranking_ties": "with tied answers (ties give no pair)",
}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _notes(
    found: dict[str, list[str]], skipped: Sequence[tuple[str, str]], kind: str, path: str
) -> list[str]:
    noun = {"preference": "pair", "ranking": "ranking"}.get(kind, "record")
    nouns = {"identical_pair": "pair", "ranking_ties": "ranking"}
    notes = []
    for key, text in _NOTES.items():
        if found[key]:
            count = _count(len(found[key]), nouns.get(key, noun))
            notes.append(f"{count} {text}: {_places(found[key], path)}")
    # Other skipped records, one note per reason, the most frequent first.
    others: dict[str, list[str]] = {}
    for source, reason in skipped:
        if source not in found["identical_pair"]:
            others.setdefault(reason, []).append(source)
    for reason, sources in sorted(others.items(), key=lambda kv: -len(kv[1])):
        notes.append(f"{_count(len(sources), 'invalid record')} skipped, {reason}: {_places(sources, path)}")
    return notes


def _places(sources: Sequence[str], path: str) -> str:
    """ "lines 3, 7, 9" when every source is in ``path``, else the sources themselves."""
    prefix = f"{path}:"
    if all(s.startswith(prefix) for s in sources):
        places = [s[len(prefix) :] for s in sources]
        places = list(dict.fromkeys(places))  # a tree line may give several records
        label = "line" if not places[0].startswith("#") else "record"
        label += "s" if len(places) > 1 else ""
    else:
        places, label = list(dict.fromkeys(sources)), ""
    shown = ", ".join(places[:_SHOWN_PLACES])
    more = f" and {len(places) - _SHOWN_PLACES} more" if len(places) > _SHOWN_PLACES else ""
    return f"{label} {shown}{more}".strip()


# --------------------------------------------------------------------- lengths
def _counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Lengths of texts: tokens of ``tokenizer`` (batched; no special tokens), else words."""
    if tokenizer is None:
        return lambda texts: [len(t.split()) for t in texts]

    def count(texts: list[str]) -> list[int]:
        lengths: list[int] = []
        for start in range(0, len(texts), TOKENIZE_BATCH):
            ids = tokenizer(texts[start : start + TOKENIZE_BATCH], add_special_tokens=False)["input_ids"]
            lengths.extend(len(x) for x in ids)
        return lengths

    return count


def _stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {"min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    values = np.asarray(lengths)
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 1),
        "p50": round(float(np.percentile(values, 50)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
        "max": int(values.max()),
    }


def _truncate(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= SAMPLE_CHARS else value[:SAMPLE_CHARS] + "…"
    if isinstance(value, list):
        return [_truncate(v) for v in value]
    if isinstance(value, dict):
        return {k: _truncate(v) for k, v in value.items()}
    return value


__all__ = ["inspect_data"]
