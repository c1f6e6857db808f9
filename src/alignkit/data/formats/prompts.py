"""Prompt sets: TRL prompt-only, bare strings, instructions, questions, MT-Bench.

Some prompt sets carry a reference answer (GSM8K ``answer``, Alpaca ``output``,
Self-Instruct ``instances[0].output``). It is kept in ``meta["reference"]`` and
becomes the completion only when ``kind="sft"`` is asked for: these files are
mostly used as prompts (sampling, PPO, evaluation).
"""

from __future__ import annotations

from typing import Any

from alignkit.data.formats._common import extra_fields, require, require_text, to_conversation, with_system
from alignkit.data.records import Message, Record
from alignkit.errors import DataError


def _prompt_or_sft(
    prompt_text: str, reference: Any, source: str, kind: str | None, meta: dict[str, Any]
) -> list[Record]:
    prompt = (Message("user", prompt_text),)
    if isinstance(reference, str) and reference.strip():
        if kind == "sft":
            return [Record(prompt, completion=(Message("assistant", reference),), source=source, meta=meta)]
        meta = {**meta, "reference": reference}
    return [Record(prompt, source=source, meta=meta)]


def parse_prompt_string(raw: Any, source: str, kind: str | None = None) -> list[Record]:
    """A bare JSON string per line (e.g. OpenAssistant's prompt lottery)."""
    if not isinstance(raw, str):
        raise DataError(f"expected a JSON string, got {type(raw).__name__}", source)
    return [Record((Message("user", raw),), source=source)]


def parse_trl_prompt(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"prompt": text or messages, ...}`` (TRL prompt-only; Koala, IFEval). Other fields go to meta."""
    prompt = with_system(
        to_conversation(require(raw, "prompt", source), "prompt", source, "user"), raw.get("system")
    )
    return [Record(prompt, source=source, meta=extra_fields(raw, ("prompt", "system")))]


def parse_instruction(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """Alpaca ``{"instruction", "input", "output"}``, Dolly ``{"instruction", "context", "response"}``,
    Self-Instruct ``{"instruction", "instances": [{"input", "output"}, ...]}`` (first instance).

    The prompt is the instruction, then a blank line and the input when there is one.
    """
    instruction = require_text(raw, "instruction", source)
    instances = raw.get("instances")
    first = (
        instances[0] if isinstance(instances, list) and instances and isinstance(instances[0], dict) else raw
    )
    extra = next((first[k] for k in ("input", "context") if isinstance(first.get(k), str)), "")
    reference = next((first[k] for k in ("output", "response") if isinstance(first.get(k), str)), None)
    text = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    meta = extra_fields(raw, ("instruction", "input", "context", "output", "response"))
    return _prompt_or_sft(text, reference, source, kind, meta)


def parse_question(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """``{"question", "answer"}`` (GSM8K: the answer ends with "#### <number>")."""
    question = require_text(raw, "question", source)
    return _prompt_or_sft(
        question, raw.get("answer"), source, kind, extra_fields(raw, ("question", "answer"))
    )


def parse_mt_bench(raw: dict[str, Any], source: str, kind: str | None = None) -> list[Record]:
    """MT-Bench ``{"question_id", "category", "turns": [...]}``.

    Only the first turn becomes the prompt: later turns follow up on the model's
    own first answer, which a static file cannot hold. All turns stay in
    ``meta["turns"]``.
    """
    turns = require(raw, "turns", source)
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
        raise DataError("field 'turns' must be a non-empty list of texts", source)
    return [Record((Message("user", turns[0]),), source=source, meta=extra_fields(raw, ()))]
