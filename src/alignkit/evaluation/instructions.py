"""`alignkit eval instructions`: IFEval's instruction-following accuracy (Zhou et al. 2023, arXiv:2311.07911).

Each prompt carries verifiable instructions (IFEval's ``instruction_id_list`` and ``kwargs`` columns, kept
by the loader in `Record.meta`). The model answers every prompt once, greedily, with alignkit's sampler
(temperature 0, up to ``--max-new-tokens`` = 1280 tokens, IFEval's usual length; a row stops at its EOS; the
KV cache within ``--memory-budget-gb``), or ``--answers FILE`` gives the answers. The ``ifeval`` verifier
(`alignkit.rewards.verifiers.ifeval`) then judges each instruction strictly and loosely, and the result
holds IFEval's four accuracies (``prompt_strict``, ``inst_strict``, ``prompt_loose``, ``inst_loose``), the
counts, a per-type breakdown (``by_type``), the answers' length and truncation, and the time taken.

``--output`` gets one JSON line per prompt: ``prompt`` (its text), ``response``, ``instruction_id_list``,
``kwargs``, the verdicts (``strict``, ``loose``, ``follow_all_strict``, ``follow_all_loose``) and, for
generated answers, ``finished`` and ``tokens``; ``--answers`` reads such a file back.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.config import DEFAULT_MODEL
from alignkit.data.records import Conversation
from alignkit.errors import ConfigError, DataError, UserError
from alignkit.evaluation.instructions_config import EvalInstructionsConfig
from alignkit.rewards.functions import completion_text, prompt_text
from alignkit.rewards.verifiers.ifeval import Judgement, accuracies, judge, parse_instructions

ANSWER_KEYS = ("response", "answer", "completion", "output", "best")
"""Where an --answers line holds its answer, in order; else the first of its ``candidates`` (`alignkit sample`)."""


@dataclass
class Item:
    """One prompt with its instructions."""

    source: str  # FILE:LINE of the record
    prompt: Conversation
    text: str  # the prompt as text: its last user message
    meta: dict[str, Any]  # the record's other columns (instruction_id_list, kwargs, key ...)
    instructions: list[Any]  # parsed: (InstructionType, arguments) per instruction


@dataclass
class Answer:
    text: str
    finished: bool | None = None  # None: not generated here
    tokens: int | None = None


def run_eval_instructions(cfg: EvalInstructionsConfig) -> dict[str, Any]:
    """Answer (or read the answers), judge, and return the summary (see the module docstring)."""
    cfg.validate()
    out_path = _output_path(cfg)
    started = time.perf_counter()
    items = read_items(cfg)
    if cfg.answers:
        answers, generation = read_answers(cfg.answers, items), {"answers_from": str(cfg.answers)}
    else:
        answers, generation = generate_answers(cfg, [item.prompt for item in items])
    judgements = [judge(answer.text, item.instructions) for item, answer in zip(items, answers, strict=True)]
    result = accuracies(judgements)
    result.update(generation)
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_gb"] = peak_rss_bytes() / 1e9
    if out_path is not None:
        write_output(out_path, items, answers, judgements)
        result["output"] = str(out_path)
    if cfg.show:
        result["examples"] = examples(items, answers, judgements, cfg.show)
    return result


def _output_path(cfg: EvalInstructionsConfig) -> Path | None:
    if not cfg.output:
        return None
    path = Path(cfg.output).expanduser()
    if path.is_dir():
        raise UserError(f"--output {path} is a directory; give a FILE.jsonl")
    if path.exists() and not cfg.overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it or choose another --output")
    return path


def read_items(cfg: EvalInstructionsConfig) -> list[Item]:
    """The prompts of --prompts with their parsed instructions; a `DataError` naming the record otherwise."""
    from alignkit.data.load import load_records

    loaded = load_records(
        cfg.prompts, kind="prompt", format=cfg.format, skip_invalid=cfg.skip_invalid, limit=cfg.limit
    )
    if loaded.skipped:
        console.warn(f"{len(loaded.skipped)} invalid prompt records skipped (first: {loaded.skipped[0][0]})")
    items = []
    for record in loaded.records:
        if "instruction_id_list" not in record.meta:
            raise DataError(
                "no instruction_id_list column: --prompts must carry IFEval's instruction_id_list and kwargs "
                "(e.g. IFEval's input_data.jsonl)",
                record.source or None,
            )
        try:
            parsed = parse_instructions(record.meta["instruction_id_list"], record.meta.get("kwargs"))
        except ConfigError as e:
            raise DataError(str(e), record.source or None) from None
        if not parsed:
            raise DataError("instruction_id_list is empty: nothing to check", record.source or None)
        items.append(Item(record.source, record.prompt, prompt_text(record.prompt), record.meta, parsed))
    if not items:
        raise UserError(f"{cfg.prompts}: no prompts to answer")
    return items


# ------------------------------------------------------------------------------------------ answers


def generate_answers(
    cfg: EvalInstructionsConfig, prompts: Sequence[Conversation]
) -> tuple[list[Answer], dict]:
    """Greedy answers from --policy / --model with alignkit's sampler, and the generation's figures."""
    import torch

    from alignkit.sampling.generate import SamplingSettings, generate
    from alignkit.sampling.run import CHUNK_ROWS, load_policy

    model, tokenizer, _ = load_policy(cfg)  # cfg has the policy/model/dtype/trust_remote_code fields
    settings = SamplingSettings(
        max_new_tokens=cfg.max_new_tokens,
        temperature=0.0,  # greedy: IFEval's protocol; the seed plays no part
        n=1,
        seed=0,
        batch_size=cfg.batch_size,
        memory_budget_gb=cfg.memory_budget_gb,
        max_prompt_tokens=cfg.max_prompt_tokens,
        compile=cfg.compile,
    )
    answers: list[Answer] = []
    totals = {"new_tokens": 0, "generate_s": 0.0, "truncated_prompts": 0, "budget": 0.0, "rows": 0, "kv": 0.0}
    with console.progress("answering", total=len(prompts), unit="prompt") as bar, torch.no_grad():
        for start in range(0, len(prompts), CHUNK_ROWS):  # as `alignkit sample` chunks: the same answers
            batch = generate(model, tokenizer, list(prompts[start : start + CHUNK_ROWS]), settings)
            answers += [Answer(g.text, g.finished, len(g.response_ids)) for g in batch]
            stats = batch.stats
            totals["new_tokens"] += int(stats["new_tokens"])
            totals["generate_s"] += float(stats["total_s"])
            totals["truncated_prompts"] += batch.truncated_prompts
            totals["budget"] = max(totals["budget"], float(stats["memory_budget_bytes"]))
            totals["rows"] = max(totals["rows"], int(stats["max_rows"]))
            totals["kv"] = max(totals["kv"], float(stats.get("peak_kv_bytes", 0.0)))
            bar.advance(len(batch), tokens=int(stats["new_tokens"]))
    if totals["truncated_prompts"]:
        console.warn(
            f"{totals['truncated_prompts']} prompts were too long and lost tokens from the left; raise "
            "--max-prompt-tokens or --max-new-tokens' room in the model's context"
        )
    return answers, {
        "model": cfg.policy or cfg.model or DEFAULT_MODEL,
        "max_new_tokens": cfg.max_new_tokens,
        "unfinished": sum(not a.finished for a in answers) / len(answers),
        "mean_tokens": sum(a.tokens or 0 for a in answers) / len(answers),
        "new_tokens": totals["new_tokens"],
        "generate_s": round(totals["generate_s"], 2),
        "tokens_per_s": totals["new_tokens"] / totals["generate_s"] if totals["generate_s"] > 0 else 0.0,
        "truncated_prompts": totals["truncated_prompts"],
        "memory_budget_gb": totals["budget"] / 1e9,
        "max_rows_in_flight": totals["rows"],
        "peak_kv_gb": totals["kv"] / 1e9,
    }


def read_answers(path: str, items: Sequence[Item]) -> list[Answer]:
    """Each item's answer from a JSONL of prompt + answer lines, matched by the prompt's text (the first
    line for a prompt wins); a `UserError` when a prompt has no answer."""
    from alignkit.data.jsonl import jsonl_items

    by_prompt: dict[str, Answer] = {}
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--answers {path}: no such file")
    with open(file, "rb") as stream:
        for source, obj, problem in jsonl_items(stream, str(path)):
            if problem is not None:
                raise DataError(problem, source)
            if not isinstance(obj, dict) or "prompt" not in obj:
                raise DataError("an answer line must be a JSON object with `prompt` and `response`", source)
            text = answer_text(obj)
            if text is None:
                raise DataError(f"no answer: give one of {', '.join(ANSWER_KEYS)} or `candidates`", source)
            finished = obj.get("finished")
            by_prompt.setdefault(_prompt_key(obj["prompt"]), Answer(text, finished, obj.get("tokens")))
    answers, missing = [], []
    for item in items:
        found = by_prompt.get(item.text.strip())
        answers.append(found or Answer(""))
        if found is None:
            missing.append(item)
    if missing:
        raise UserError(
            f"--answers {path} has no answer to {len(missing)} of {len(items)} prompts (first: "
            f"{missing[0].source} {missing[0].text[:60]!r}); answers are matched to --prompts by the prompt's text"
        )
    return answers


def answer_text(obj: dict[str, Any]) -> str | None:
    """The answer of one --answers line (see `ANSWER_KEYS`), or None."""
    for key in ANSWER_KEYS:
        if obj.get(key) is not None:
            return _as_text(obj[key])
    candidates = obj.get("candidates")
    if isinstance(candidates, list) and candidates:
        return _as_text(candidates[0])
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("text", value.get("content", "")))
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        from alignkit.data.records import Message

        return completion_text(
            tuple(Message(str(m.get("role", "assistant")), str(m.get("content", ""))) for m in value)
        )
    return str(value)


def _prompt_key(prompt: Any) -> str:
    """A prompt (text or a list of messages) as the text answers are matched by."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        prompt = users[-1] if users else (prompt[-1].get("content", "") if prompt else "")
    return str(prompt).strip()


# ------------------------------------------------------------------------------------------ output


def write_output(
    path: Path, items: Sequence[Item], answers: Sequence[Answer], judgements: Sequence[Judgement]
) -> None:
    from alignkit.files import atomic_write_text

    lines = []
    for item, answer, j in zip(items, answers, judgements, strict=True):
        line: dict[str, Any] = {"source": item.source}
        if "key" in item.meta:
            line["key"] = item.meta["key"]
        line.update(
            prompt=item.text,
            response=answer.text,
            instruction_id_list=list(j.instruction_ids),
            kwargs=item.meta.get("kwargs"),
            strict=list(j.strict),
            loose=list(j.loose),
            follow_all_strict=j.all_strict,
            follow_all_loose=j.all_loose,
        )
        if answer.finished is not None:
            line.update(finished=answer.finished, tokens=answer.tokens)
        lines.append(json.dumps(line, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")


def examples(
    items: Sequence[Item], answers: Sequence[Answer], judgements: Sequence[Judgement], n: int
) -> list[dict]:
    """The first ``n`` prompts with their answers and the instructions missed (strict)."""
    out = []
    for item, answer, j in list(zip(items, answers, judgements, strict=True))[:n]:
        missed = [name for name, ok in zip(j.instruction_ids, j.strict, strict=True) if not ok]
        out.append({"prompt": item.text, "response": answer.text, "missed": missed})
    return out


def peak_rss_bytes() -> int:
    """This process's peak resident memory (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)
