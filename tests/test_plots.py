"""`alignkit plot`: figures from synthetic runs and a best-of-n file, the best-of-k estimator, bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignkit.cli import main
from alignkit.losses.kl import best_of_n_kl_bound as kl_bound
from alignkit.plots.best_of_k import best_of_k_curve, best_of_k_weights, rank_order
from alignkit.plots.sources import CONFIG_MARKERS, read_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _ppo_run(root: Path, steps: int = 80) -> Path:
    """A ppo run as `alignkit ppo` writes it: config.yaml with ppo's fields, no report.json (still running),
    train rows every step and eval rows (``"eval": 1``) every 20 steps."""
    run = root / "ppo-run"
    rows = []
    for step in range(1, steps + 1):
        kl = 0.05 * (step - 1)
        rows.append(
            {
                "step": step,
                "kl/ref": kl,
                "reward/score": 2 * math.sqrt(kl) - 0.5 * kl,  # rises, then falls: over-optimisation
                "gold/score": 1.5 * math.sqrt(kl) - 0.9 * kl,
                "reward/total": 2 * math.sqrt(kl) - 0.55 * kl,
                "ppo/policy_loss": -0.01 * math.cos(step),
                "ppo/value_loss": 1.0 / step,
                "ppo/loss": 0.5 / step,
                "gen/length": 40 + 0.5 * step,
                "train/lr": 1e-5,
            }
        )
        if step % 20 == 0:
            rows.append(
                {
                    "step": step,
                    "eval": 1,
                    "eval/kl/ref": kl,
                    "eval/reward/score": 1.5 * math.sqrt(kl),
                    "eval/gen/length": 41 + 0.5 * step,
                }  # fmt: skip
            )
    _write_jsonl(run / "metrics.jsonl", rows)
    (run / "config.yaml").write_text("model: tiny\nkl_coef: 0.05\nprompts: p.jsonl\n", encoding="utf-8")
    return run


def _dpo_run(root: Path) -> Path:
    """A finished dpo run: report.json names the command; eval rows log a KL but no reward-model score."""
    run = root / "dpo-run"
    rows = [
        {"step": s, "loss/total": 0.69 - 0.03 * s, "reward/margin": 0.1 * s, "train/lr": 1e-6}
        for s in range(1, 11)
    ]
    rows += [{"step": s, "eval/loss": 0.7 - 0.02 * s, "eval/kl_ref": 0.1 * s} for s in (5, 10)]
    _write_jsonl(run / "metrics.jsonl", rows)
    (run / "config.yaml").write_text("model: tiny\nbeta: 0.1\n", encoding="utf-8")
    (run / "report.json").write_text(json.dumps({"command": "dpo", "steps": 10}), encoding="utf-8")
    return run


def _best_of_n(path: Path, prompts: int = 5, n: int = 8, seed: int = 0) -> Path:
    """An `alignkit sample --best-of-n` output: two reward models ("check" has weight 0), tokens, winner."""
    rng = random.Random(seed)
    lines = []
    for _ in range(prompts):
        cands = []
        for _ in range(n):
            rm = round(rng.gauss(0, 1), 3)
            cands.append(
                {
                    "text": "x",
                    "finished": True,
                    "tokens": rng.randint(5, 50),
                    "score": rm,
                    "scores": {"rm": rm, "check": round(rm * 0.5 + rng.gauss(0, 1), 3)},
                }  # fmt: skip
            )
        best = max(range(n), key=lambda j: (cands[j]["score"], -j))
        lines.append({"prompt": [{"role": "user", "content": "hi"}], "candidates": cands, "chosen_index": best,
                      "best": "x", "best_score": cands[best]["score"], "worst_index": 0})  # fmt: skip
    return _write_jsonl(path, lines)


def _run_json(argv: list[str], capsys) -> dict:
    rc = main(["plot", *argv, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def _check_png(path: str, height: int, width: int) -> None:
    import matplotlib.image

    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.shape == (height, width, 4)
    assert image[..., :3].std() > 0.01  # something was drawn, not a blank canvas


# --------------------------------------------------------------------------------------- the figures
def test_plot_ppo_dpo_and_best_of_n(tmp_path, capsys):
    ppo, dpo = _ppo_run(tmp_path), _dpo_run(tmp_path)
    bon = _best_of_n(tmp_path / "best8.jsonl")
    out = tmp_path / "figs"
    summary = _run_json([str(ppo), str(dpo), str(bon), "--output", str(out)], capsys)
    figures = {Path(f["path"]).name: f for f in summary["figures"]}
    assert list(figures) == ["loss.png", "reward_kl.png", "proxy_gold.png", "length.png", "best_of_n.png"]
    assert summary["skipped"] == []
    assert figures["proxy_gold.png"]["series"] == ["ppo-run (ppo): proxy", "ppo-run (ppo): gold"]
    assert sorted(p.name for p in out.iterdir()) == sorted(figures)  # no temp files left behind

    loss = figures["loss.png"]["series"]
    # both runs on the loss figure, labelled by run dir + command; eval losses after training ones
    assert "ppo-run (ppo): ppo/loss" in loss and "dpo-run (dpo): loss/total" in loss
    assert loss[-1] == "dpo-run (dpo): eval/loss"
    assert not any("train/lr" in s or "reward/" in s for s in loss)
    # 5 loss panels -> 3 x 2 grid of 5 x 3.6 inches at 120 dpi
    _check_png(figures["loss.png"]["path"], 864, 1800)

    frontier = figures["reward_kl.png"]["series"]
    assert frontier == [
        "ppo-run (ppo): reward/score vs kl/ref",
        "ppo-run (ppo): eval/reward/score vs eval/kl/ref",
        "best8.jsonl (best-of-8): best-of-k score vs KL bound",
    ]
    assert any("dpo-run (dpo)" in n and "no reward-model score" in n for n in summary["notes"])
    _check_png(figures["reward_kl.png"]["path"], 600, 900)

    assert figures["length.png"]["series"] == ["ppo-run (ppo): gen/length", "ppo-run (ppo): eval/gen/length"]
    _check_png(figures["length.png"]["path"], 540, 900)

    assert figures["best_of_n.png"]["series"] == [
        "best8.jsonl (best-of-8): score (= scores.rm)",  # rm ranks alone (check has weight 0)
        "best8.jsonl (best-of-8): scores.check",
        "best8.jsonl (best-of-8): tokens",
    ]
    _check_png(figures["best_of_n.png"]["path"], 576, 1440)


def test_default_output_is_first_runs_plots_and_table(tmp_path, capsys):
    dpo = _dpo_run(tmp_path)
    rc = main(["plot", str(dpo)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (dpo / "plots" / "loss.png").is_file()
    assert "loss.png" in err and "dpo-run (dpo): loss/total" in err
    # figures without data are skipped, named in the summary, and never drawn
    for name in ("reward_kl.png", "length.png", "best_of_n.png"):
        assert f"skipped {name}" in err
        assert not (dpo / "plots" / name).exists()


def test_best_of_n_file_alone(tmp_path, capsys):
    bon = _best_of_n(tmp_path / "samples" / "best4.jsonl", n=4)
    summary = _run_json([str(bon)], capsys)
    assert [Path(f["path"]).name for f in summary["figures"]] == ["reward_kl.png", "best_of_n.png"]
    assert Path(summary["output"]) == tmp_path / "samples" / "plots"
    assert {s["figure"] for s in summary["skipped"]} == {"loss.png", "length.png", "proxy_gold.png"}


def test_same_dir_names_get_their_parent(tmp_path, capsys):
    a, b = _dpo_run(tmp_path / "a"), _dpo_run(tmp_path / "b")
    summary = _run_json([str(a), str(b), "-o", str(tmp_path / "out")], capsys)
    series = summary["figures"][0]["series"]
    assert "a/dpo-run (dpo): loss/total" in series and "b/dpo-run (dpo): loss/total" in series


def test_command_detection(tmp_path):
    ppo = _ppo_run(tmp_path)
    assert read_run(ppo).command == "ppo"  # config.yaml marker
    (ppo / "alignkit_model.json").write_text(json.dumps({"trainer": "ppo"}), encoding="utf-8")
    (ppo / "config.yaml").write_text("model: tiny\n", encoding="utf-8")
    assert read_run(ppo).command == "ppo"  # the saved policy's metadata
    stamped = tmp_path / "kto-20250101-120000"
    _write_jsonl(stamped / "metrics.jsonl", [{"step": 1, "loss/total": 1.0}])
    assert read_run(stamped).command == "kto"  # Run.create's default name
    bare = tmp_path / "bare"
    _write_jsonl(bare / "metrics.jsonl", [{"step": 1, "loss/total": 1.0}])
    assert read_run(bare).command is None


def test_config_markers_belong_to_one_trainer_only():
    """`CONFIG_MARKERS` stands in for importing the trainer configs (torch); keep it true to them."""
    from alignkit.cli.recipes import command_configs

    fields = {c: {f.name for f in dataclasses.fields(cls)} for c, cls in command_configs().items()}
    trainers = ("rm", "dpo", "kto", "sft", "ppo", "grpo")  # rloo is grpo with other defaults
    for command, marker in CONFIG_MARKERS.items():
        assert marker in fields[command]
        assert not any(marker in fields[other] for other in trainers if other != command)


# ---------------------------------------------------------------------------------- best-of-k maths
def _brute_force(values, keys, passed, k):
    """Mean over all k-subsets of the winner's value (gate first, highest key, first sampled on ties)."""
    winners = []
    for subset in itertools.combinations(range(len(values)), k):
        best = max(subset, key=lambda j: (passed[j], keys[j], -j))
        winners.append(values[best])
    return sum(winners) / len(winners)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_k_matches_brute_force(seed):
    rng = random.Random(seed)
    n = 7
    keys = [float(rng.choice([0, 1, 1, 2, 3, 5])) for _ in range(n)]  # ties on purpose
    values = [rng.gauss(0, 1) for _ in range(n)]
    passed = [rng.random() < 0.6 for _ in range(n)]
    curve = best_of_k_curve(values, keys, passed)
    expected = [_brute_force(values, keys, passed, k) for k in range(1, n + 1)]
    np.testing.assert_allclose(curve, expected, rtol=1e-12, atol=1e-12)
    own = best_of_k_curve(keys)  # keys as their own values, no gate
    np.testing.assert_allclose(
        own, [_brute_force(keys, keys, [True] * n, k) for k in range(1, n + 1)], atol=1e-12
    )


def test_best_of_k_by_hand():
    """Scores 1, 2, 3, k = 2: subsets {1,2} {1,3} {2,3} have winners 2, 3, 3, mean 8/3; k = 1 is the mean
    2 and k = 3 the maximum 3."""
    np.testing.assert_allclose(best_of_k_curve([3.0, 1.0, 2.0]), [2.0, 8 / 3, 3.0], rtol=1e-14)


def test_best_of_k_weights_are_distributions_at_large_n():
    w = best_of_k_weights(2048)  # C(2048, 1024) overflows a float; log-factorials do not
    assert np.isfinite(w).all() and (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-9)
    assert w[-1, -1] == pytest.approx(1.0) and w[0, 0] == pytest.approx(1 / 2048)


def test_smoothing_keeps_lines_and_peaks_in_place():
    from alignkit.plots.figures import _smooth

    line = [2.0 * i + 1 for i in range(100)]
    np.testing.assert_allclose(_smooth(line, 5)[2:-2], line[2:-2])  # a centred mean does not lag
    peak = [-abs(i - 60.0) for i in range(100)]
    assert int(np.argmax(_smooth(peak, 9))) == 60


def test_rank_order_puts_gate_passers_above_and_earlier_ties_higher():
    assert rank_order([5.0, 1.0, 1.0], [False, True, True]) == [0, 2, 1]


def test_best_of_k_ends_match_the_file(tmp_path):
    """k = 1 is the mean of all candidates (the summary's mean_score); k = N the chosen winners."""
    from alignkit.plots.best_of_k import mean_curve
    from alignkit.plots.sources import read_best_of_n

    path = _best_of_n(tmp_path / "b.jsonl", prompts=6, n=8, seed=3)
    data = read_best_of_n(path)
    curve = mean_curve([best_of_k_curve(p.scores) for p in data.prompts], data.n)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert curve[0] == pytest.approx(np.mean([c["score"] for line in lines for c in line["candidates"]]))
    assert curve[-1] == pytest.approx(np.mean([line["best_score"] for line in lines]))
    assert np.all(np.diff(curve) >= -1e-12)  # the best of more candidates is never worse


def test_kl_bound_matches_the_sampler():
    from alignkit.losses.kl import best_of_n_kl_bound as sampler_kl_bound

    ks = [1, 2, 4, 16, 64]
    np.testing.assert_allclose(kl_bound(ks), [sampler_kl_bound(k) for k in ks], rtol=1e-12)
    assert kl_bound([1])[0] == 0.0


# -------------------------------------------------------------------------------------- bad input
def _error(argv: list[str], capsys) -> str:
    rc = main(["plot", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1
    return err


def test_dir_without_metrics(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "no metrics.jsonl" in _error([str(tmp_path / "empty")], capsys)


def test_missing_path(tmp_path, capsys):
    assert "no such run directory or file" in _error([str(tmp_path / "nope")], capsys)


def test_malformed_line_names_file_and_line(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss/total": 1}\n{"step": 2, \n{"step": 3}\n')
    assert f"{run / 'metrics.jsonl'}:2" in _error([str(run)], capsys)


def test_row_without_step(tmp_path, capsys):
    run = tmp_path / "r"
    _write_jsonl(run / "metrics.jsonl", [{"step": 1, "loss/total": 1.0}, {"loss/total": 0.5}])
    err = _error([str(run)], capsys)
    assert f"{run / 'metrics.jsonl'}:2" in err and '"step"' in err


def test_torn_last_line_of_a_running_run_is_skipped(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "loss/total": 1}\n{"step": 2, "loss/total": 0.5}\n{"step": 3, "lo'
    )
    summary = _run_json([str(run)], capsys)
    assert summary["figures"][0]["series"] == ["r: loss/total"]


def test_nothing_to_plot(tmp_path, capsys):
    run = tmp_path / "r"
    _write_jsonl(run / "metrics.jsonl", [{"step": 1, "train/lr": 1e-5}])
    err = _error([str(run), "-o", str(tmp_path / "out")], capsys)
    assert "nothing to plot" in err and "loss" in err
    assert not (tmp_path / "out").exists()


def test_unscored_samples_file(tmp_path, capsys):
    path = _write_jsonl(
        tmp_path / "s.jsonl", [{"prompt": [], "candidates": [{"text": "a", "finished": True}]}]
    )
    err = _error([str(path)], capsys)
    assert f"{path}:1" in err and "--best-of-n" in err


def test_output_is_a_file(tmp_path, capsys):
    run = _dpo_run(tmp_path)
    (tmp_path / "f").write_text("x")
    assert "is a file" in _error([str(run), "-o", str(tmp_path / "f")], capsys)


# ------------------------------------------------------------------------------------ import cost
def test_help_does_not_import_matplotlib():
    code = (
        "import sys\n"
        "from alignkit.cli import main\n"
        "main(['--help']); main(['plot', '--help'])\n"
        "print('matplotlib' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "plot" in result.stdout  # the command is registered
    assert result.stdout.strip().splitlines()[-1] == "False"
