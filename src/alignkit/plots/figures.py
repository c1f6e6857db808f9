"""The figures of `alignkit plot`, drawn with matplotlib's object API (no pyplot: no global state, no
window, the Agg renderer picked by `savefig` for PNG).

Each builder takes the runs and best-of-n files and returns a `Drawn` (the figure and the names of the
series on it) or, when no input has data for it, the reason it was skipped; no empty axes are drawn.
matplotlib is imported inside the builders so that importing this module stays cheap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignkit.losses.kl import best_of_n_kl_bound as kl_bound
from alignkit.plots.best_of_k import best_of_k_curve, mean_curve
from alignkit.plots.sources import BestOfNData, RunData

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Reward versus KL: the KL and reward keys tried in order, training rows then evaluation rows (the x and
# y of a point come from the same row). dpo logs `eval/kl_ref` but no reward-model score (docs/metrics.md).
FRONTIER_KEYS = (
    (("kl/ref",), ("reward/score", "reward/total")),
    (("eval/kl/ref", "eval/kl_ref"), ("eval/reward/score", "eval/reward/total")),
)
LENGTH_KEYS = ("gen/length", "eval/gen/length")
SMOOTH_ABOVE = 50  # longer series are drawn faint with a smoothed line on top
MARKERS_BELOW = 30  # shorter series get a marker on each point
DPI = 120


@dataclass
class Drawn:
    figure: Figure
    series: list[str]
    notes: list[str]


def png_bytes(figure: Figure) -> bytes:
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _color(index: int) -> str:
    return f"C{index % 10}"


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (fewer at the ends): unlike an exponential average it
    does not shift a peak to later steps."""
    import numpy as np

    half = max(1, window) // 2
    kernel = np.ones(2 * half + 1)
    v = np.asarray(values, dtype=np.float64)
    return list(np.convolve(v, kernel, "same") / np.convolve(np.ones_like(v), kernel, "same"))


def _time_series(ax: Axes, points: list[tuple[int, float]], label: str, color: str, dashed: bool = False):
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    style = "--" if dashed else "-"
    if len(points) > SMOOTH_ABOVE:
        ax.plot(steps, values, style, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, _smooth(values, len(points) // 20), style, color=color, linewidth=1.6, label=label)
    else:
        marker = ("s" if dashed else "o") if len(points) < MARKERS_BELOW else None
        ax.plot(steps, values, style, color=color, marker=marker, markersize=3.5, linewidth=1.4, label=label)


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str = "") -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------ loss
def loss_figure(runs: list[RunData], samples: list[BestOfNData]) -> Drawn | str:
    """One panel per ``*loss*`` metric (training first, then eval/), one line per run that logs it."""
    names: dict[str, None] = {}
    for run in runs:
        for name in run.metric_names():
            if "loss" in name:
                names.setdefault(name, None)
    metrics = sorted(names, key=lambda n: n.startswith("eval/"))  # stable: first-seen order otherwise
    if not metrics:
        return "no run logs a *loss* metric"
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _new_figure(5.0 * cols, 3.6 * rows)
    series = []
    for slot, metric in enumerate(metrics, start=1):
        ax = fig.add_subplot(rows, cols, slot)
        for index, run in enumerate(runs):
            points = run.series(metric)
            if points:
                _time_series(ax, points, run.label, _color(index), dashed=metric.startswith("eval/"))
                series.append(f"{run.label}: {metric}")
        _finish(ax, metric, "step")
    fig.suptitle("Losses", fontsize=11)
    return Drawn(fig, series, [])


# ------------------------------------------------------------------------------------ reward versus KL
def reward_kl_figure(runs: list[RunData], samples: list[BestOfNData]) -> Drawn | str:
    """Reward-model score (y) against KL to the reference (x): one line per run in step order (training
    rows solid, held-out evaluation rows dashed), and each best-of-n file's best-of-k curve at its KL
    bound. The start of each run is a hollow circle, its end a filled one labelled with its step."""
    curves: list[tuple[str, str, list[tuple[int, float, float]], int, bool]] = []
    notes = []
    for index, run in enumerate(runs):
        found = False
        for evaluation, (x_keys, y_keys) in enumerate(FRONTIER_KEYS):
            pair = _first_pair(run, x_keys, y_keys)
            if pair is not None:
                x_key, y_key, points = pair
                curves.append(
                    (f"{run.label}: {y_key} vs {x_key}", run.label, points, index, bool(evaluation))
                )
                found = True
        if not found and any(run.series(k) for keys, _ in FRONTIER_KEYS for k in keys):
            notes.append(f"{run.label} logs a KL but no reward-model score: not on the reward-vs-KL figure")
    frontiers = [s for s in samples if s.n >= 2]
    if not curves and not frontiers:
        return "no run logs kl/ref with reward/score (or reward/total), and no best-of-n file with N >= 2"
    fig = _new_figure(7.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    series = []
    for name, label, points, index, evaluation in curves:
        xs, ys = [p[1] for p in points], [p[2] for p in points]
        color = _color(index)
        style = "--" if evaluation else "-"
        legend = label + (" eval" if evaluation else "")
        if len(points) > SMOOTH_ABOVE:  # noisy rollouts: the raw path faint, both coordinates smoothed
            ax.plot(xs, ys, style, color=color, linewidth=0.8, alpha=0.25)
            window = len(points) // 20
            ax.plot(_smooth(xs, window), _smooth(ys, window), style, color=color, linewidth=1.6, label=legend)
        else:
            ax.plot(xs, ys, style, color=color, linewidth=1.4, label=legend)
        ax.plot(xs[0], ys[0], "o", color=color, markerfacecolor="none", markersize=7)
        ax.plot(xs[-1], ys[-1], "o", color=color, markersize=7)
        ax.annotate(f"step {points[-1][0]}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(5, 5),
                    fontsize=7, color=color)  # fmt: skip
        series.append(name)
    for offset, sample in enumerate(frontiers):
        ks = list(range(1, sample.n + 1))
        curve = mean_curve([best_of_k_curve(p.scores, passed=p.passed) for p in sample.prompts], sample.n)
        color = _color(len(runs) + offset)
        ax.plot(
            kl_bound(ks),
            curve,
            ":",
            color=color,
            marker="^",
            markersize=4,
            label=f"{sample.label} (KL bound)",
        )
        series.append(f"{sample.label}: best-of-k score vs KL bound")
    ax.set_title("Reward versus KL to the reference (up and to the left is better)", fontsize=10)
    ax.set_xlabel("KL(policy || reference), nats per answer")
    ax.set_ylabel("reward (the run's reward model, function or verifier)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return Drawn(fig, series, notes)


def _first_pair(
    run: RunData, x_keys: Sequence[str], y_keys: Sequence[str]
) -> tuple[str, str, list[tuple[int, float, float]]] | None:
    for x_key in x_keys:
        for y_key in y_keys:
            points = run.pairs(x_key, y_key)
            if points:
                return x_key, y_key, points
    return None


# ---------------------------------------------------------------------------------------- length drift
def length_figure(runs: list[RunData], samples: list[BestOfNData]) -> Drawn | str:
    """Mean response length in tokens over steps: ``gen/length`` solid, ``eval/gen/length`` dashed."""
    fig = None
    series = []
    for index, run in enumerate(runs):
        for key in LENGTH_KEYS:
            points = run.series(key)
            if not points:
                continue
            if fig is None:
                fig = _new_figure(7.5, 4.5)
                ax = fig.add_subplot(1, 1, 1)
            evaluation = key.startswith("eval/")
            _time_series(ax, points, run.label + (" eval" if evaluation else ""), _color(index), evaluation)
            series.append(f"{run.label}: {key}")
    if fig is None:
        return "no run logs gen/length (only ppo samples during training)"
    _finish(ax, "Length drift: mean response length", "step", "tokens per response")
    return Drawn(fig, series, [])


# ------------------------------------------------------------------------------------------ best-of-n
def best_of_n_figure(runs: list[RunData], samples: list[BestOfNData]) -> Drawn | str:
    """Expected score of the best of k candidates for k = 1..N (bottom axis k, top axis its KL bound),
    for the rerank score and, when the file has several reward models, each model's score of the same
    winners; a second panel shows the winners' length when the file records ``tokens``."""
    usable = [s for s in samples if s.n >= 2]
    if not usable:
        return "no best-of-n file with N >= 2 candidates per prompt" if samples else "no best-of-n file given"
    with_tokens = [s for s in usable if all(p.tokens is not None for p in s.prompts)]
    fig = _new_figure(12.0 if with_tokens else 7.5, 4.8)
    ax = fig.add_subplot(1, 2 if with_tokens else 1, 1)
    series: list[str] = []
    n_max = max(s.n for s in usable)
    index = len(runs)  # each curve its own colour, after the runs' (as on the reward-vs-KL figure)
    for sample in usable:
        ks = list(range(1, sample.n + 1))
        for name, curve, style in _score_curves(sample):
            label = f"{sample.label}: {name}"
            ax.plot(ks, curve, style, color=_color(index), marker="o", markersize=3, label=label)
            series.append(label)
            index += 1
    _k_axis(ax, n_max)
    _finish(ax, "Best-of-k: expected score of the winner", "k (candidates drawn)", "score")
    if with_tokens:
        ax_len = fig.add_subplot(1, 2, 2)
        for offset, sample in enumerate(with_tokens):
            color = _color(len(runs) + offset)
            ks = list(range(1, sample.n + 1))
            curves = [best_of_k_curve(p.tokens, p.scores, p.passed) for p in sample.prompts]  # type: ignore[arg-type]
            ax_len.plot(ks, mean_curve(curves, sample.n), "-", color=color, marker="o", markersize=3,
                        label=f"{sample.label}: tokens")  # fmt: skip
            series.append(f"{sample.label}: tokens")
        _k_axis(ax_len, max(s.n for s in with_tokens))
        _finish(ax_len, "Best-of-k: length of the winner", "k (candidates drawn)", "tokens")
    return Drawn(fig, series, list({n for s in usable for n in s.notes}))


def _score_curves(sample: BestOfNData) -> list[tuple[str, Any, str]]:
    """The rerank score's curve and, with two or more reward models, each model's score of the same
    winners (a model that does not rank, or ranks with a small weight, is the over-optimisation check).
    A model whose scores are the rerank score itself (it ranks alone) is named on the score's curve."""
    prompts = sample.prompts
    models = [m for m in prompts[0].per_model if all(m in p.per_model for p in prompts)]
    if len(models) < 2:
        models = []
    same = [m for m in models if all(p.per_model[m] == p.scores for p in prompts)]
    name = "score" + "".join(f" (= scores.{m})" for m in same[:1])
    out = [(name, mean_curve([best_of_k_curve(p.scores, passed=p.passed) for p in prompts], sample.n), "-")]
    for model in models:
        if model not in same[:1]:
            curves = [best_of_k_curve(p.per_model[model], p.scores, p.passed) for p in prompts]
            out.append((f"scores.{model}", mean_curve(curves, sample.n), "--"))
    return out


def _k_axis(ax: Axes, n: int) -> None:
    """k on a log2 axis with ticks at powers of two (and N); the top axis labels each tick with the KL
    bound log k - (k-1)/k of best-of-k."""
    from matplotlib.ticker import NullLocator

    ticks = sorted({2**i for i in range(int(math.log2(n)) + 1)} | {n})
    ax.set_xscale("log", base=2)
    ax.set_xlim(1, n)
    ax.set_xticks(ticks, labels=[str(k) for k in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    top = ax.secondary_xaxis("top")
    top.set_xticks(ticks, labels=[f"{v:.2f}" for v in kl_bound(ticks)])
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xlabel("KL bound of best-of-k, nats", fontsize=8)
    top.tick_params(labelsize=7)


# File name -> builder, in the order of the summary.
# ------------------------------------------------------------------------------------- proxy versus gold
def proxy_gold_figure(runs: list[RunData], samples: list[BestOfNData]) -> Drawn | str:
    """Proxy reward (``reward/score``) and held-out gold (``gold/score``) over training steps, one panel each,
    one line per run, with the KL to the reference (``kl/ref``) on each panel's right axis: the proxy rising
    while the gold falls, as the KL grows, is over-optimisation (Gao et al. 2022, fig. 1, plots both against
    the square root of the KL; per-step KL estimates are too noisy on small rollouts to serve as the x axis)."""
    found = [(i, run) for i, run in enumerate(runs) if run.series("gold/score")]
    if not found:
        return "no run logs gold/score (ppo --gold-reward-model or --gold-judge)"
    fig = _new_figure(10.0, 4.2)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    series = []
    for index, run in found:
        kl = run.series("kl/ref")
        for ax, key, what in ((axes[0], "reward/score", "proxy"), (axes[1], "gold/score", "gold")):
            points = run.series(key)
            if not points:
                continue
            _time_series(ax, points, run.label, _color(index))
            series.append(f"{run.label}: {what}")
            if kl:
                right = ax.twinx()
                right.plot([p[0] for p in kl], [p[1] for p in kl], ":", color=_color(index), alpha=0.6)
                right.set_ylabel("KL to reference (dotted), nats", fontsize=8)
    titles = ("proxy: the reward model trained against", "gold: held out, never trained against")
    for ax, title in zip(axes, titles, strict=True):
        _finish(ax, title, "step", "score")
    return Drawn(fig, series, [])


FIGURES = {
    "loss.png": loss_figure,
    "reward_kl.png": reward_kl_figure,
    "proxy_gold.png": proxy_gold_figure,
    "length.png": length_figure,
    "best_of_n.png": best_of_n_figure,
}
