"""`alignkit judge`: AI feedback (RLAIF) into the same label file that `alignkit label` writes.

For each item the two answers are shown in a seeded random order, the template (one principle, see
`alignkit.feedback.templates`) becomes the judge's user message, and the judge names the better answer:

* a local causal LM (`judges.local.LocalJudge`): the decision comes from the log-probabilities of the two
  answer names ("A" / "B") as the next token after the chat template's assistant header, never from
  generated text (Bai et al. 2022, "Constitutional AI", sec. 4.1; Lee et al. 2023, "RLAIF", sec. 2.1);
* an OpenAI-compatible endpoint (`judges.http.HttpJudge`): one chat-completions request per order, asking
  for one token, with log-probabilities when the endpoint gives them, else the parsed reply.

``--swap`` judges each pair in both orders, because LLM judges favour a position (Zheng et al. 2023,
"Judging LLM-as-a-Judge", sec. 3.3; Wang et al. 2023, "Large Language Models are not Fair Evaluators"). A
pair whose verdict follows the position (A wins, then B wins after swapping) is inconsistent: it becomes a
tie (recorded, never trained on) or is dropped (``--on-disagree drop``, a skip row). The probability of a
consistent pair is the mean of the two orders, which cancels a constant position bias.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.errors import ConfigError, UserError
from alignkit.feedback.config import JudgeConfig, require_paths
from alignkit.feedback.items import Item, conv_json, load_candidates, shown_order
from alignkit.feedback.judges.base import (
    Judge,
    JudgeEndpointError,
    JudgeInput,
    PairOutcome,
    Verdict,
    combine,
    conversation_text,
)
from alignkit.feedback.store import LabelStore, tied_answers
from alignkit.feedback.templates import Template, load_template


def judge_inputs(item: Item, order: tuple[int, ...]) -> JudgeInput:
    return JudgeInput(
        conversation_text(item.prompt, "user"),
        conversation_text(item.answers[order[0]], "assistant"),
        conversation_text(item.answers[order[1]], "assistant"),
    )


def judge_name(cfg: JudgeConfig) -> str:
    if cfg.is_http():
        return str(cfg.judge_model)
    path = Path(cfg.judge).expanduser()
    return path.name if path.exists() else cfg.judge


def make_judge(cfg: JudgeConfig, template: Template) -> Judge:
    choices = cfg.choice_names()
    if cfg.judge.strip().lower() == "simulated":  # the demo's transparent rule (feedback/judges/simulated.py)
        from alignkit.feedback.judges.simulated import SimulatedJudge

        return SimulatedJudge(tie_margin=cfg.tie_margin)
    if cfg.is_http():
        from alignkit.feedback.judges.http import HttpJudge

        return HttpJudge(
            cfg.judge,
            str(cfg.judge_model),
            template,
            choices,
            timeout=cfg.timeout,
            retries=cfg.retries,
            retry_wait=cfg.retry_wait,
            rate=cfg.rate,
            workers=cfg.workers,
            max_tokens=cfg.max_tokens,
            logprobs=cfg.http_logprobs,
        )
    if re.match(r"^[\w.-]+:\d+(/|$)", cfg.judge):
        raise ConfigError(f"--judge {cfg.judge!r} looks like host:port; write the URL as http://{cfg.judge}")
    from alignkit.feedback.judges.local import LocalJudge

    return LocalJudge.load(
        cfg.judge,
        template,
        choices,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        dtype=cfg.dtype,
        device=cfg.device,
        trust_remote_code=cfg.trust_remote_code,
    )


# ------------------------------------------------------------------------------------------ driver
def _row_fields(
    item: Item,
    order: tuple[int, ...],
    outcome: PairOutcome,
    ab: Verdict,
    ba: Verdict | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    x, y = order
    judge: dict[str, Any] = {**info, "p_first": ab.first}
    if ab.logps is not None:
        judge["logps"] = ab.logps
        judge["mass"] = ab.mass
    if ba is not None:
        judge["swap"] = {
            "consistent": outcome.consistent,
            "p_first": ba.first,
            "winner": ba.winner,
            "logps": ba.logps,
        }
    if ab.truncated or (ba is not None and ba.truncated):
        judge["truncated"] = True
    if outcome.event == "skip":
        replies = [v.reply for v in (ab, ba) if v is not None and v.reply is not None]
        if replies:
            judge["replies"] = [r[:200] for r in replies]
        return {"shown_order": [x, y], "reason": outcome.reason, "judge": judge}
    if outcome.event == "tie":
        return {
            "tied": tied_answers(item, order),
            "shown_order": [x, y],
            "choice": None,
            "tie": True,
            "judge": judge,
        }
    assert outcome.winner is not None
    win, lose = (x, y) if outcome.winner == 0 else (y, x)
    p = outcome.p_first
    judge["p_chosen"] = None if p is None else (p if outcome.winner == 0 else 1.0 - p)
    return {
        "prompt": conv_json(item.prompt),
        "chosen": conv_json(item.answers[win]),
        "rejected": conv_json(item.answers[lose]),
        "shown_order": [x, y],
        "choice": outcome.winner + 1,
        "tie": False,
        "judge": judge,
    }


def judge_items(
    judge: Judge,
    items: list[Item],
    store: LabelStore,
    annotator: str,
    seed: int = 0,
    swap: bool = False,
    on_disagree: str = "tie",
    chunk: int = 8,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Judge ``items`` in chunks and append one row per item as soon as its chunk is done; return counts."""
    counts = {
        "judged": 0,
        "labels": 0,
        "ties": 0,
        "dropped": 0,
        "unparsed": 0,
        "first_chosen": 0,
        "swapped": 0,
        "consistent": 0,
        "mass_sum": 0.0,
        "mass_n": 0,
    }
    with console.progress("judging", total=len(items), unit="pair") as bar:
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            orders = [shown_order(item, seed, 2) for item in part]
            inputs = [judge_inputs(item, order) for item, order in zip(part, orders, strict=True)]
            if swap:
                inputs += [JudgeInput(i.prompt, i.answer_b, i.answer_a) for i in inputs]
            verdicts = judge.judge(inputs)
            for k, (item, order) in enumerate(zip(part, orders, strict=True)):
                ab = verdicts[k]
                ba = verdicts[len(part) + k] if swap else None
                outcome = combine(ab, ba, on_disagree)
                fields = _row_fields(item, order, outcome, ab, ba, info or {})
                store.append(outcome.event, item.item_id, annotator, **fields)
                _count(counts, outcome, ab, ba)
            bar.advance(len(part))
    return counts


def _count(counts: dict[str, Any], outcome: PairOutcome, ab: Verdict, ba: Verdict | None) -> None:
    counts["judged"] += 1
    if outcome.event == "label":
        counts["labels"] += 1
        counts["first_chosen"] += outcome.winner == 0
    elif outcome.event == "tie":
        counts["ties"] += 1
    elif outcome.reason == "inconsistent":
        counts["dropped"] += 1
    else:
        counts["unparsed"] += 1
    if outcome.consistent is not None:
        counts["swapped"] += 1
        counts["consistent"] += outcome.consistent
    for v in (ab, ba):
        if v is not None and v.mass is not None:
            counts["mass_sum"] += v.mass
            counts["mass_n"] += 1


def run_judge(cfg: JudgeConfig) -> dict[str, Any]:
    """Judge ``cfg.data`` into ``cfg.output``; returns the summary (also printed unless ``cfg.json``)."""
    require_paths(cfg.data, cfg.output)
    assert cfg.data and cfg.output
    template = load_template(cfg.template)
    candidates = load_candidates(cfg.data, cfg.skip_invalid, cfg.format)
    for note in candidates.notes:
        console.warn(note)
    annotator = (cfg.annotator or f"judge:{judge_name(cfg)}").strip()
    started = time.perf_counter()
    with LabelStore.open(cfg.output, candidates.dataset, "pair", cfg.append) as store:
        done = store.state.done_items(annotator)
        pending = [item for item in candidates.items if item.item_id not in done]
        summary: dict[str, Any] = {
            "output": str(cfg.output),
            "judge": judge_name(cfg),
            "annotator": annotator,
            "template": template.name,
            "items": len(candidates.items),
            "already_done": len(candidates.items) - len(pending),
        }
        if cfg.limit:
            pending = pending[: cfg.limit]
        counts: dict[str, Any] = {}
        if pending:
            judge = make_judge(cfg, template)
            chunk = cfg.workers if cfg.is_http() else max(1, cfg.batch_size // (2 if cfg.swap else 1))
            info = {"model": judge_name(cfg), "template": template.name, "choices": cfg.choice_names()}
            rows_before = len(store.state.rows)
            try:
                counts = judge_items(
                    judge, pending, store, annotator, cfg.seed, cfg.swap, cfg.on_disagree, chunk, info
                )
            except (JudgeEndpointError, UserError) as e:
                saved = len(store.state.rows) - rows_before
                raise type(e)(
                    f"{e}; the {saved} judgements of this run before it are saved in {cfg.output}: "
                    "run the same command to continue"
                ) from None
        else:
            console.info(f"every item is already judged by {annotator} in {cfg.output}; nothing to do")
    seconds = time.perf_counter() - started
    judged = counts.get("judged", 0)
    summary.update(
        judged=judged,
        labels=counts.get("labels", 0),
        ties=counts.get("ties", 0),
        dropped=counts.get("dropped", 0),
        unparsed=counts.get("unparsed", 0),
        first_position_rate=(counts["first_chosen"] / counts["labels"]) if counts.get("labels") else None,
        swap_consistency=(counts["consistent"] / counts["swapped"]) if counts.get("swapped") else None,
        mean_choice_mass=(counts["mass_sum"] / counts["mass_n"]) if counts.get("mass_n") else None,
        seconds=round(seconds, 3),
        pairs_per_s=(judged / seconds) if judged and seconds > 0 else None,
    )
    return summary
