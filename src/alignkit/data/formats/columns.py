"""Flat tables (CSV, or flat parquet / JSON rows): columns are mapped by name.

Names are compared case-insensitively, with spaces and dashes read as
underscores ("Best Answer" is ``best_answer``). The first name found in each
list below is used; every other column is kept in ``meta`` under its own name.

=========== ===========================================================================
role        column names
=========== ===========================================================================
prompt      prompt, question, instruction (+ input), query, problem, input
system      system, system_prompt
chosen      chosen, response_j, preferred, chosen_response
rejected    rejected, response_k, dispreferred, rejected_response
completion  completion, response, output, answer, best_answer, target
label       label (with a completion: true/false, 1/0, yes/no)
margin      margin
=========== ===========================================================================

The kind follows from the columns: chosen + rejected → preference; a completion
with a label → unpaired; a completion alone → sft (e.g. XSTest model answers,
TruthfulQA's "Best Answer"); else prompt (a ``label`` column then stays in meta,
e.g. XSTest's safe/unsafe).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alignkit.data.formats._common import parse_bool, parse_margin, to_conversation, with_system
from alignkit.data.records import Record
from alignkit.errors import DataError

PROMPT = ("prompt", "question", "instruction", "query", "problem", "input")
SYSTEM = ("system", "system_prompt")
CHOSEN = ("chosen", "response_j", "preferred", "chosen_response")
REJECTED = ("rejected", "response_k", "dispreferred", "rejected_response")
COMPLETION = ("completion", "response", "output", "answer", "best_answer", "target")


def normalize_name(name: Any) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _find(names: dict[str, str], aliases: tuple[str, ...]) -> str | None:
    """The original column name of the first alias present."""
    return next((names[a] for a in aliases if a in names), None)


def answer_columns(raw: Any) -> set[str]:
    """Normalized names of the answer columns (chosen, rejected, completion) a row has."""
    if not isinstance(raw, Mapping):
        return set()
    return {n for n in map(normalize_name, raw) if n in CHOSEN + REJECTED + COMPLETION}


def has_prompt_column(raw: Any) -> bool:
    return isinstance(raw, Mapping) and _find({normalize_name(k): k for k in raw}, PROMPT) is not None


def parse_columns(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    names = {normalize_name(k): k for k in raw}
    prompt_col = _find(names, PROMPT)
    if prompt_col is None:
        raise DataError(
            f"no prompt column (one of {', '.join(PROMPT)}); columns: {', '.join(map(str, raw))}", source
        )
    used = {prompt_col}
    value = raw[prompt_col]
    if value is None:
        raise DataError(f"field '{prompt_col}' is missing", source)
    input_col = names.get("input")
    if normalize_name(prompt_col) == "instruction" and input_col is not None:
        used.add(input_col)
        if isinstance(raw[input_col], str) and raw[input_col].strip():
            value = f"{value}\n\n{raw[input_col]}"
    system_col = _find(names, SYSTEM)
    prompt = with_system(
        to_conversation(value, prompt_col, source, "user"), raw.get(system_col) if system_col else None
    )
    used.add(system_col)

    def answer(col: str) -> Any:
        used.add(col)
        if raw[col] is None:
            raise DataError(f"field '{col}' is missing", source)
        return to_conversation(raw[col], col, source, "assistant")

    chosen_col, rejected_col = _find(names, CHOSEN), _find(names, REJECTED)
    completion_col, label_col = _find(names, COMPLETION), names.get("label")
    if chosen_col or rejected_col:
        if not (chosen_col and rejected_col):
            missing = "rejected" if chosen_col else "chosen"
            raise DataError(f"a '{chosen_col or rejected_col}' column but no '{missing}' column", source)
        chosen, rejected = answer(chosen_col), answer(rejected_col)
        margin_col = names.get("margin")
        margin = parse_margin({"margin": raw[margin_col]}, source) if margin_col else None
        used.add(margin_col)
        meta = {k: v for k, v in raw.items() if k not in used}
        return [Record(prompt, chosen, rejected, margin=margin, source=source, meta=meta)]
    if completion_col and kind == "prompt" and label_col is None:
        # prompts for online RL: the answer column stays a column under its own name (a reward function's
        # `answer=` / `solution=` keyword: TRL passes every dataset column on) and as `reference`
        meta = {k: v for k, v in raw.items() if k not in used}
        if isinstance(raw[completion_col], str):
            meta.setdefault("reference", raw[completion_col])
        return [Record(prompt, source=source, meta=meta)]
    if completion_col:
        completion = answer(completion_col)
        label = parse_bool(raw[label_col], label_col, source) if label_col else None
        used.add(label_col if label is not None else None)
        meta = {k: v for k, v in raw.items() if k not in used}
        return [Record(prompt, completion=completion, label=label, source=source, meta=meta)]
    return [Record(prompt, source=source, meta={k: v for k, v in raw.items() if k not in used})]
