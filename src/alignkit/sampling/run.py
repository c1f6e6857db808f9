"""`alignkit sample`: K answers per prompt, or the best of N by reward models; output JSONL and a summary.

Flow: prompts (any data the loaders read, as prompt records) → the policy (a model, or a run's adapter on its
base) → `generate` in chunks of about ``CHUNK_ROWS`` candidates → with --best-of-n, `score_generations` and
`best_index` (see `alignkit.sampling.best_of_n`) → one JSON line per prompt, plus the optional preference
and SFT exports.

Output files are written to a temporary file beside the target and renamed over it when the run ends
(atomic: a crash or Ctrl-C leaves no half-written file, and no partial results either).

Output line (what `alignkit label` / `judge` read: ``prompt`` + ``candidates`` with ``text``)::

    {"prompt": [{"role", "content"}...],
     "candidates": [{"text", "finished", "tokens", "score"?, "scores"?: {name: s}, "passed_gate"?}...],
     "chosen_index"?, "best"?, "best_score"?, "worst_index"?, "prompt_truncated"?}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.config import DEFAULT_MODEL
from alignkit.errors import ConfigError, ModelError, UserError
from alignkit.sampling.config import SampleConfig

CHUNK_ROWS = 2048  # candidates per `generate` call: bounds memory, gives progress; the sampler refills within
SEED_STRIDE = 1_000_003  # the chunk starting at prompt s samples with seed * SEED_STRIDE + s


class AtomicJsonl:
    """Lines written to a temporary file in the target's folder; `commit` fsyncs and renames it over."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        self.lines = 0

    def write(self, obj: dict[str, Any]) -> None:
        self.file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.lines += 1

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _check_outputs(cfg: SampleConfig) -> dict[str, Path]:
    """The files to write, by role; refuses to overwrite (without --overwrite) or to write one file twice."""
    if not cfg.output:
        raise ConfigError("--output FILE.jsonl is required (where the samples go)")
    wanted = {"output": cfg.output, "export_pairs": cfg.export_pairs, "export_sft": cfg.export_sft}
    paths = {role: Path(p).expanduser() for role, p in wanted.items() if p}
    resolved = [p.resolve() for p in paths.values()]
    if len(set(resolved)) != len(resolved):
        raise ConfigError("--output, --export-pairs and --export-sft must be different files")
    for role, path in paths.items():
        if path.is_dir():
            raise UserError(f"--{role.replace('_', '-')} {path} is a directory; give a FILE.jsonl")
        if path.exists() and not cfg.overwrite:
            raise UserError(
                f"{path} already exists; pass --overwrite to replace it or choose another "
                f"--{role.replace('_', '-')}"
            )
    return paths


def load_policy(cfg: SampleConfig) -> tuple[Any, Any, str]:
    """(model, tokenizer, base model name) for --model, or for --policy RUN (adapter on its base, or a
    full checkpoint: the run dir itself or PPO's RUN/policy). The model is on `models.device.default_device`."""
    from alignkit.models import lora, registry
    from alignkit.models.device import default_device

    trust = cfg.trust_remote_code
    device = default_device()
    if cfg.policy is None:
        name = cfg.model or DEFAULT_MODEL
        tokenizer = registry.load_tokenizer(name, trust_remote_code=trust)
        model = registry.load_model(name, cfg.dtype, trust, device=device, tokenizer=tokenizer)
        local = Path(name).expanduser()
        base = (
            registry.adapter_base(local) if registry.is_adapter_dir(local) else name
        )  # --model RUN works too
        return model, tokenizer, base
    run = Path(cfg.policy).expanduser()
    if not run.is_dir():
        raise ModelError(f"--policy {cfg.policy}: no such run directory")
    if (run / "reward_model").is_dir() or registry.read_model_meta(run).get("kind") == "reward":
        raise ModelError(f"--policy {cfg.policy} is a reward model, not a policy; pass it as --reward-model")
    if registry.is_adapter_dir(run):
        base = cfg.model or registry.adapter_base(run)
        tokenizer = registry.load_tokenizer(str(run), trust_remote_code=trust)
        model = registry.load_model(base, cfg.dtype, trust, device=device, tokenizer=tokenizer)
        adapter = str(registry.read_model_meta(run).get("adapter") or "default")
        return lora.load_adapter(model, run, adapter), tokenizer, base
    if cfg.model is not None:
        raise ConfigError(f"--policy {cfg.policy} is a full checkpoint (no LoRA adapter); drop --model")
    folder = run / "policy" if (run / "policy" / "config.json").is_file() else run  # PPO full fine-tune
    tokenizer = registry.load_tokenizer(str(folder), trust_remote_code=trust)
    model = registry.load_model(str(folder), cfg.dtype, trust, device=device, tokenizer=tokenizer)
    return model, tokenizer, str(folder)


def _load_rewards(cfg: SampleConfig, model: Any, base: str):
    """The `RewardSet`; same-base LoRA reward models become extra adapters on a LoRA policy's base."""
    from peft import PeftModel

    from alignkit.models.device import default_device
    from alignkit.rewards.ensemble import load_reward_set
    from alignkit.rewards.verifiers import reward_function_members

    shared = isinstance(model, PeftModel)
    return load_reward_set(
        cfg.reward_model,
        cfg.reward_weight or None,
        combine="gate" if cfg.gate else cfg.combine,
        gate=cfg.gate,
        gate_option="--gate",  # errors name the flag `alignkit sample` takes
        dtype=cfg.dtype,
        shared_model=model if shared else None,
        shared_base=base if shared else None,
        forward_batch_size=cfg.score_batch_size,
        device=default_device(),
        functions=reward_function_members(cfg.reward_fn, cfg.reward_fn_weight or None),
    )


def run_sample(cfg: SampleConfig) -> dict[str, Any]:
    """Sample (and rerank) every prompt of ``cfg.prompts``; write the files; return the summary."""
    if not cfg.prompts:
        raise ConfigError("--prompts PATH is required (a prompt file, or any data file with prompts)")
    paths = _check_outputs(cfg)
    records = _load_prompts(cfg)
    prompts = [rec.prompt for rec in records]
    model, tokenizer, base = load_policy(cfg)
    reranking = cfg.best_of_n is not None
    rewards = _load_rewards(cfg, model, base) if reranking else None
    settings = cfg.sampling_settings()
    n = settings.n

    writers = {role: AtomicJsonl(path) for role, path in paths.items()}
    try:
        totals, sums = _sample_all(cfg, records, model, tokenizer, rewards, settings, writers)
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    for writer in writers.values():
        writer.commit()

    summary = _summary(reranking, n, len(prompts), totals, paths["output"])
    if rewards is not None:
        _add_reward_summary(summary, rewards, sums, totals, writers)
    if totals["truncated"]:
        console.warn(
            f"{totals['truncated']} of {len(prompts)} prompts were too long and lost tokens from the left "
            "(marked prompt_truncated in the output); raise --max-prompt-tokens or shorten them"
        )
    return summary


def _load_prompts(cfg: SampleConfig) -> list[Any]:
    """The prompt records of ``cfg.prompts`` (their other columns go to reward functions), warning about
    skipped invalid records."""
    from alignkit.data.load import load_records

    loaded = load_records(
        cfg.prompts, kind="prompt", format=cfg.format, skip_invalid=cfg.skip_invalid, limit=cfg.limit
    )
    if loaded.skipped:
        console.warn(f"{len(loaded.skipped)} invalid prompt records skipped (first: {loaded.skipped[0][0]})")
    return list(loaded.records)


def _sample_all(
    cfg: SampleConfig,
    records: list[Any],
    model: Any,
    tokenizer: Any,
    rewards: Any,
    settings: Any,
    writers: dict[str, AtomicJsonl],
) -> tuple[dict[str, Any], dict[str, float]]:
    """Sample (and, with ``rewards``, rerank) the prompts in chunks of about ``CHUNK_ROWS`` candidates, each
    chunk with its own seed; write every line. Returns (totals, score sums) for the summary."""
    from alignkit.rewards.functions import record_columns
    from alignkit.sampling.generate import generate

    prompts = [rec.prompt for rec in records]
    n = settings.n
    totals: dict[str, Any] = dict(
        new_tokens=0, generate_s=0.0, score_s=0.0, truncated=0, unfinished=0, max_rows=0, budget=0.0
    )
    sums: dict[str, float] = {}  # score sums: "all", "best", "<name>", "best/<name>", "passed"
    per_chunk = max(1, CHUNK_ROWS // n)
    with console.progress("sampling", total=len(prompts), unit="prompt") as bar:
        for start in range(0, len(prompts), per_chunk):
            chunk = prompts[start : start + per_chunk]
            settings.seed = cfg.seed * SEED_STRIDE + start
            batch = generate(model, tokenizer, chunk, settings)
            totals["new_tokens"] += int(batch.stats["new_tokens"])
            totals["generate_s"] += float(batch.stats["total_s"])
            totals["truncated"] += batch.truncated_prompts
            totals["unfinished"] += sum(not g.finished for g in batch)
            totals["max_rows"] = max(totals["max_rows"], int(batch.stats["max_rows"]))
            totals["budget"] = max(totals["budget"], float(batch.stats["memory_budget_bytes"]))
            groups = batch.by_prompt()
            lines = [_plain_line(prompt, group) for prompt, group in zip(chunk, groups, strict=True)]
            if rewards is not None:
                columns = record_columns(records[start : start + per_chunk], n)
                best, worst, scored = _rerank_chunk(
                    cfg, rewards, tokenizer, chunk, batch, lines, totals, sums, columns
                )
                _write_exports(writers, chunk, groups, best, worst, scored)
            for line in lines:
                writers["output"].write(line)
            bar.advance(len(chunk), tokens=int(batch.stats["new_tokens"]))
    return totals, sums


def _rerank_chunk(
    cfg: SampleConfig,
    rewards: Any,
    tokenizer: Any,
    chunk: list[Any],
    batch: Any,
    lines: list[dict[str, Any]],
    totals: dict[str, Any],
    sums: dict[str, float],
    columns: dict[str, list[Any]] | None = None,
) -> tuple[list[int], list[int], list[bool]]:
    """Score one chunk's candidates, annotate its output lines with the scores and the winner, and add to the
    score sums. ``columns``: the prompt records' columns, one value per candidate, for reward functions.
    Returns the (P,) best and worst candidate of each prompt, and whether any of its candidates was scored
    (a reward function may return None for all of them: then the first stands as ``best``, unscored)."""
    from alignkit.sampling.best_of_n import best_index, score_generations, worst_index

    n = batch.n
    t0 = time.perf_counter()
    scores = score_generations(rewards, tokenizer, chunk, batch.generations, cfg.score_batch_size, columns)
    totals["score_s"] += time.perf_counter() - t0
    combined, passed = scores.grid(n)
    best, worst = best_index(combined, passed).tolist(), worst_index(combined, passed).tolist()
    _add_scores(sums, scores, best, n)
    for i, line in enumerate(lines):
        _annotate(line, scores, i, n, best[i], worst[i])
    scored = (~combined.isnan()).any(-1).tolist()
    return best, worst, scored


def _write_exports(
    writers: dict[str, AtomicJsonl],
    chunk: list[Any],
    groups: list[Any],
    best: list[int],
    worst: list[int],
    scored: list[bool],
) -> None:
    """Best versus worst as a preference pair (when they differ), and the best as an SFT example; nothing
    for a prompt none of whose candidates was scored (its ``best`` is only the first)."""
    from alignkit.sampling.best_of_n import preference_pair, sft_example

    for i, group in enumerate(groups):
        if not scored[i]:
            continue
        if "export_pairs" in writers and best[i] != worst[i]:
            pair = preference_pair(chunk[i], group[best[i]], group[worst[i]])
            if pair is not None:
                writers["export_pairs"].write(pair.to_dict())
        if "export_sft" in writers:
            writers["export_sft"].write(sft_example(chunk[i], group[best[i]]).to_dict())


def _summary(reranking: bool, n: int, prompts: int, totals: dict[str, Any], output: Path) -> dict[str, Any]:
    """The summary of any run: counts, speed, truncation, the output file."""
    candidates = prompts * n
    return {
        "mode": "best-of-n" if reranking else "sample",
        "n": n,
        "prompts": prompts,
        "candidates": candidates,
        "new_tokens": totals["new_tokens"],
        "tokens_per_s": totals["new_tokens"] / totals["generate_s"] if totals["generate_s"] > 0 else 0.0,
        "candidates_per_s": candidates / totals["generate_s"] if totals["generate_s"] > 0 else 0.0,
        "generate_s": totals["generate_s"],
        "truncated_prompts": totals["truncated"],
        "unfinished_fraction": totals["unfinished"] / candidates,
        "memory_budget_gb": totals["budget"] / 1e9,
        "max_rows_in_flight": totals["max_rows"],
        "output": str(output),
    }


def _add_reward_summary(
    summary: dict[str, Any],
    rewards: Any,
    sums: dict[str, float],
    totals: dict[str, Any],
    writers: dict[str, AtomicJsonl],
) -> None:
    """Best-of-n's part of the summary: the KL bound, mean scores (all and chosen), gate pass rate, exports."""
    from alignkit.losses.kl import best_of_n_kl_bound

    n, candidates = summary["n"], summary["candidates"]

    def mean(key: str) -> float | None:  # over the candidates with a score (a reward function may abstain)
        count = sums.get(f"count:{key}", 0.0)
        return sums[key] / count if count else None

    summary.update(
        kl_bound=best_of_n_kl_bound(n),
        mean_best_score=mean("best"),
        mean_score=mean("all"),
        rewards={
            m.name: {
                "mean": mean(m.name),
                "mean_best": mean(f"best/{m.name}"),
                "shared_base": bool(getattr(m.scorer, "shared", False)),  # an adapter on the policy's base
            }
            for m in rewards.members
        },
        score_s=totals["score_s"],
        retokenised=dict(rewards.retokenised),
    )
    if "passed" in sums:
        summary["gate_pass_rate"] = sums["passed"] / candidates
    for role in ("export_pairs", "export_sft"):
        if role in writers:
            summary[role.removeprefix("export_")] = writers[role].lines


def _plain_line(prompt, group) -> dict[str, Any]:
    line: dict[str, Any] = {
        "prompt": [m.to_dict() for m in prompt],
        "candidates": [
            {"text": g.text, "finished": g.finished, "tokens": len(g.response_ids)} for g in group
        ],
    }
    if group[0].prompt_truncated:
        line["prompt_truncated"] = group[0].prompt_truncated
    return line


def _annotate(line: dict[str, Any], scores, i: int, n: int, best: int, worst: int) -> None:
    """Add prompt i's scores, chosen index and best text to its output line."""
    for j, cand in enumerate(line["candidates"]):
        row = i * n + j
        cand["score"] = _score(scores.combined[row])
        cand["scores"] = {name: _score(values[row]) for name, values in scores.per_model.items()}
        if scores.passed is not None:
            cand["passed_gate"] = bool(scores.passed[row])
    line.update(
        chosen_index=best,
        best=line["candidates"][best]["text"],
        best_score=line["candidates"][best]["score"],
        worst_index=worst,
    )


def _score(value) -> float | None:
    """A score for the output line: None where a reward function gave none (NaN is not JSON)."""
    value = float(value)
    return None if math.isnan(value) else value


def _add_scores(sums: dict[str, float], scores, best: list[int], n: int) -> None:
    """Accumulate the sums behind the summary's means (all candidates vs the chosen ones)."""
    chosen = [i * n + b for i, b in enumerate(best)]

    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value

    def add_scores(key: str, values) -> None:  # a sum and a count over the scored rows (NaN: no score)
        scored = ~values.isnan()
        add(key, float(values[scored].sum()))
        add(f"count:{key}", float(scored.sum()))

    add_scores("all", scores.combined)
    add_scores("best", scores.combined[chosen])
    for name, values in scores.per_model.items():
        add_scores(name, values)
        add_scores(f"best/{name}", values[chosen])
    if scores.passed is not None:
        add("passed", float(scores.passed.sum()))
