"""How good is a reward model on held-out human comparisons? (`alignkit eval rm`, and the end of `alignkit rm`)

Every answer is scored once; the (better, worse) pairs of each comparison are read off
those scores (a ranking of K answers gives its C(K, 2) pairs, each counted once here).

Metrics (see docs/metrics.md):

- ``accuracy``: fraction of pairs with r_better > r_worse, a tie counting one half;
- ``margin``: mean r_better - r_worse;
- ``accuracy_by_length``: accuracy when the preferred answer is longer / shorter / as
  long (in tokens), and per quartile of the token difference len(better) - len(worse):
  a model that only learned "longer is better" fails the "shorter" bucket;
- ``length_correlation``: Pearson correlation between score and answer length over all
  scored answers, a reward-hacking warning sign above 0.5 (Singhal et al. 2023, "A Long
  Way to Go: Investigating Length Correlations in RLHF");
- ``calibration``: reliability of P(better ≻ worse) = σ(r_better - r_worse), the
  Bradley-Terry probability. Each pair is counted in both orders (p, outcome 1) and
  (1 - p, outcome 0), so the 10 equal-width bins cover [0, 1] symmetrically; per bin the
  mean predicted probability and the observed frequency, and the expected calibration
  error ECE = sum_b n_b / n |observed_b - predicted_b| (Guo et al. 2017, eq. 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from alignkit import console
from alignkit.rewards.comparisons import Comparison

CALIBRATION_BINS = 10


def score_comparisons(
    reward_model: Any, comparisons: Sequence[Comparison], batch_size: int = 16
) -> list[Tensor]:
    """Scores of every answer, one (K,) tensor per comparison (length-batched; the prompt forwarded once
    per comparison when the reward model `shares_prompt`)."""
    if hasattr(reward_model, "score_comparisons"):
        return reward_model.score_comparisons(comparisons, batch_size)
    flat = [s for c in comparisons for s in c.sequences]
    scores = reward_model.score_sequences(flat, batch_size)
    out, start = [], 0
    for c in comparisons:
        out.append(scores[start : start + len(c.sequences)])
        start += len(c.sequences)
    return out


def comparison_pairs(
    comparisons: Sequence[Comparison], scores: Sequence[Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(better_scores, worse_scores, better_lengths, worse_lengths), each (P,), over every pair of different rank."""
    rows: list[tuple[float, float, int, int]] = []
    for c, s in zip(comparisons, scores, strict=True):
        for i in range(len(c.ranks)):
            for j in range(i + 1, len(c.ranks)):
                if c.ranks[i] == c.ranks[j]:
                    continue
                b, w = (i, j) if c.ranks[i] < c.ranks[j] else (j, i)
                rows.append((float(s[b]), float(s[w]), c.answer_tokens[b], c.answer_tokens[w]))
    if not rows:
        empty = torch.zeros(0)
        return empty, empty, empty, empty
    cols = list(zip(*rows, strict=True))
    return tuple(torch.tensor(col, dtype=torch.float64) for col in cols)  # type: ignore[return-value]


def _accuracy(gap: Tensor) -> float | None:
    if gap.numel() == 0:
        return None
    return float(((gap > 0).double() + 0.5 * (gap == 0).double()).mean())


def pearson(x: Tensor, y: Tensor) -> float | None:
    """Pearson correlation of two (N,) tensors; None when either is constant or N < 2."""
    if x.numel() < 2:
        return None
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return None if denom == 0 else float((x * y).sum()) / denom


def length_buckets(gap: Tensor, length_diff: Tensor) -> dict[str, Any]:
    """Accuracy by sign of len(better) - len(worse) and by its quartiles (token difference)."""
    out: dict[str, Any] = {}
    for name, mask in (
        ("better_longer", length_diff > 0),
        ("better_shorter", length_diff < 0),
        ("same_length", length_diff == 0),
    ):
        out[name] = {"pairs": int(mask.sum()), "accuracy": _accuracy(gap[mask])}
    quartiles = []
    if length_diff.numel():
        edges = torch.quantile(length_diff, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
        edges = torch.unique(edges)  # token differences are integers: quartile edges often coincide
        if edges.numel() == 1:
            edges = edges.repeat(2)
        for q in range(edges.numel() - 1):
            lo, hi = float(edges[q]), float(edges[q + 1])
            last = q == edges.numel() - 2
            # Half-open buckets, the last one closed, so that every pair falls in exactly one.
            mask = (length_diff >= lo) & ((length_diff <= hi) if last else (length_diff < hi))
            quartiles.append(
                {"min_diff": lo, "max_diff": hi, "pairs": int(mask.sum()), "accuracy": _accuracy(gap[mask])}
            )
    out["quartiles"] = quartiles
    return out


def calibration(gap: Tensor, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability of σ(gap) over both orders of every pair (see the module docstring)."""
    p = torch.sigmoid(gap.double())
    predicted = torch.cat([p, 1 - p])  # (2P,)
    outcome = torch.cat([torch.ones_like(p), torch.zeros_like(p)])
    # A tie (p = 0.5) is right half the time in either order: its outcomes average to 0.5, as in accuracy.
    index = torch.clamp((predicted * bins).long(), max=bins - 1)
    rows, ece = [], 0.0
    n = max(1, predicted.numel())
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        row: dict[str, Any] = {
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "count": count,
            "predicted": None,
            "observed": None,
        }
        if count:
            row["predicted"] = float(predicted[mask].mean())
            row["observed"] = float(outcome[mask].mean())
            ece += count / n * abs(row["observed"] - row["predicted"])
        rows.append(row)
    return {"bins": rows, "ece": ece if gap.numel() else None}


def pair_metrics(
    better_scores: Tensor,
    worse_scores: Tensor,
    better_lengths: Tensor,
    worse_lengths: Tensor,
    all_scores: Tensor | None = None,
    all_lengths: Tensor | None = None,
) -> dict[str, Any]:
    """Every metric from (P,) pair scores and answer lengths (tokens).

    ``all_scores`` / ``all_lengths`` (N,): every scored answer once, for the length
    correlation (default: the answers of the pairs, repeats included).
    """
    gap = better_scores - worse_scores
    if all_scores is None or all_lengths is None:
        all_scores = torch.cat([better_scores, worse_scores])
        all_lengths = torch.cat([better_lengths, worse_lengths])
    return {
        "accuracy": _accuracy(gap),
        "pairs": int(gap.numel()),
        "margin": float(gap.mean()) if gap.numel() else None,
        "reward_mean": float(all_scores.mean()) if all_scores.numel() else None,
        "reward_std": float(all_scores.std()) if all_scores.numel() > 1 else None,
        "length_correlation": pearson(all_scores, all_lengths.to(all_scores.dtype)),
        "accuracy_by_length": length_buckets(gap, better_lengths - worse_lengths),
        "calibration": calibration(gap),
    }


def evaluate_comparisons(
    reward_model: Any, comparisons: Sequence[Comparison], batch_size: int = 16
) -> dict[str, Any]:
    """Score every answer once and compute `pair_metrics` (plus ``comparisons``)."""
    scores = score_comparisons(reward_model, comparisons, batch_size)
    better, worse, better_len, worse_len = comparison_pairs(comparisons, scores)
    flat_scores = torch.cat(scores).double() if scores else torch.zeros(0, dtype=torch.float64)
    flat_lengths = torch.tensor([n for c in comparisons for n in c.answer_tokens], dtype=torch.float64)
    result = pair_metrics(better, worse, better_len, worse_len, flat_scores, flat_lengths)
    return {"comparisons": len(comparisons), **result}


# ------------------------------------------------------------- commands
def _load_for_scoring(cfg: Any) -> tuple[Any, Any]:
    from alignkit.data.load import load_records
    from alignkit.models.device import default_device
    from alignkit.rewards.model import load_reward_model

    loaded = load_records(cfg.data, format=cfg.format, skip_invalid=cfg.skip_invalid)
    if loaded.skipped:
        console.warn(
            f"skipped {len(loaded.skipped)} invalid record(s): " + ", ".join(s for s, _ in loaded.skipped[:5])
        )
    reward_model = load_reward_model(
        cfg.reward_model, cfg.dtype, max_length=cfg.max_length, device=default_device()
    )
    return reward_model, loaded


def run_eval_rm(cfg: Any) -> dict[str, Any]:
    """`alignkit eval rm`: evaluate a reward model on preference pairs / rankings; return the metrics."""
    from alignkit.rewards.comparisons import check_trainable_kind, prepare_comparisons, report_prepared

    reward_model, loaded = _load_for_scoring(cfg)
    check_trainable_kind(loaded.kind, cfg.data)
    data = prepare_comparisons(loaded.records, reward_model.tokenizer, reward_model.max_length)
    report_prepared(str(cfg.data), data, reward_model.max_length)
    with console.progress("scoring", total=None, unit="answer", status=False):
        result = evaluate_comparisons(reward_model, data.comparisons, cfg.batch_size)
    return {
        **result,
        "skipped_invalid": len(loaded.skipped),
        **{k: v for k, v in data.summary().items() if k != "comparisons"},
        "max_length": reward_model.max_length,
        "data": str(cfg.data),
        "reward_model": str(cfg.reward_model),
    }


def run_score(cfg: Any) -> dict[str, Any]:
    """`alignkit score`: write every record with ``score`` (one answer) or ``scores`` (several, in order).

    Preference records list ``[chosen, rejected]``, rankings their ``responses`` order.
    An answer longer than ``max_length`` on its own gets ``null`` (counted, warned):
    answers are never cut. The output file is written atomically.
    """
    import json

    from alignkit.errors import DataError
    from alignkit.files import atomic_write_text
    from alignkit.rewards.comparisons import encode_answers

    reward_model, loaded = _load_for_scoring(cfg)
    if loaded.kind == "prompt":
        raise DataError("these records have prompts but no answers to score", str(cfg.data))
    items = [(r.prompt, a) for r in loaded.records for a in r.answers()]
    encoded = encode_answers(reward_model.tokenizer, items, reward_model.max_length)
    keep = [i for i, e in enumerate(encoded) if e is not None]
    scores: list[float | None] = [None] * len(items)
    with console.progress("scoring", total=None, unit="answer", status=False):
        values = reward_model.score_sequences([encoded[i].input_ids for i in keep], cfg.batch_size)  # type: ignore[union-attr]
    for i, v in zip(keep, values.tolist(), strict=True):
        scores[i] = v
    lines, start = [], 0
    for record in loaded.records:
        k = len(record.answers())
        row = record.to_dict()
        if k == 1:
            row["score"] = scores[start]
        else:
            row["scores"] = scores[start : start + k]
        start += k
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(cfg.output, "".join(lines))
    too_long = len(items) - len(keep)
    if too_long:
        console.warn(
            f"{too_long} answer(s) longer than max_length {reward_model.max_length} on their own got score null"
        )
    truncated = sum(1 for e in encoded if e is not None and e.prompt_cut > 0)
    scored = [s for s in scores if s is not None]
    return {
        "records": len(loaded.records),
        "answers": len(items),
        "scored": len(scored),
        "too_long": too_long,
        "truncated_prompts": truncated,
        "skipped_invalid": len(loaded.skipped),
        "mean_score": sum(scored) / len(scored) if scored else None,
        "output": str(cfg.output),
    }
