"""`alignkit rm`: the training loop, saving/loading/export, resume, bad input, and the CLI.

Every test trains the session's tiny Llama (hidden 32, 2 layers) for a few steps in fp32.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from alignkit import console
from alignkit.cli import main
from alignkit.config import build_config
from alignkit.errors import TrainingError
from alignkit.models.device import Precision, resolve_precision
from alignkit.rewards.comparisons import collate, encode_answers, prepare_comparisons
from alignkit.rewards.model import load_reward_model
from alignkit.runs import Run, read_metrics
from alignkit.trainers import checkpoints, loop, memory, processes
from alignkit.trainers import rm as rm_module
from alignkit.trainers.rm import build_reward_model, seed_everything, train_reward_model
from alignkit.trainers.rm_config import RMConfig

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "rm_tiny.yaml"


def write_pairs(path: Path, n: int = 12, extra: list[dict] | None = None) -> Path:
    rows = [
        {
            "prompt": f"What is {i} plus {i}?",
            "chosen": f"{i} plus {i} is {2 * i}.",
            "rejected": "No idea, ask someone else." + " Really." * (i % 3),
        }
        for i in range(n)
    ]
    rows += extra or []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_rankings(path: Path, n: int = 6) -> Path:
    rows = [
        {
            "prompt": f"Name a number above {i}.",
            "responses": [f"{i + 1}", f"{i - 1}", "banana", f"maybe {i + 2}"],
            "ranks": [0, 2, 3, 1],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tmp_path: Path, model_dir: Path, data: Path, **overrides) -> RMConfig:
    values = {"model": str(model_dir), "data": str(data), "output": str(tmp_path / "run"), **overrides}
    return build_config(RMConfig, RECIPE, values)


def tiny_rm_args(model_dir: Path, data: Path, output: Path) -> list[str]:
    """`alignkit rm` on the tiny recipe (add --max-steps, --json ... as needed)."""
    return ["rm", "-c", str(RECIPE), "-m", str(model_dir), "--data", str(data), "-o", str(output)]


def train_in_process(cfg: RMConfig):
    """Build the reward model, snapshot its weights, train it; return (model, weights before, run)."""
    from accelerate import Accelerator

    from alignkit.data.load import load_records

    seed_everything(cfg.seed)
    rm = build_reward_model(cfg, resolve_precision(cfg.dtype, cfg.lora))
    data = prepare_comparisons(load_records(cfg.data).records, rm.tokenizer, cfg.max_length)
    run = Run.create("rm", cfg.output, cfg)
    before = {n: p.detach().clone() for n, p in rm.named_parameters()}
    train_reward_model(cfg, rm, data, None, run, Accelerator())
    device = next(rm.parameters()).device  # accelerate moved the model to its device (a GPU, if any)
    return rm, {n: t.to(device) for n, t in before.items()}, run


# ------------------------------------------------------------------- training
def test_lora_trains_every_adapter_weight_and_the_head_but_no_base_weight(tmp_path, tiny_model_dir):
    cfg = config(tmp_path, tiny_model_dir, write_pairs(tmp_path / "p.jsonl"), max_steps=3)
    rm, before, _ = train_in_process(cfg)
    trainable = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and "head.score.weight" in trainable
    for name, p in rm.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        if name in trainable:
            assert changed, f"trainable {name} did not change"
        else:
            assert not changed, f"frozen {name} changed"
            assert "lora_" not in name


def test_no_lora_trains_base_weights(tmp_path, tiny_model_dir):
    cfg = config(tmp_path, tiny_model_dir, write_pairs(tmp_path / "p.jsonl"), max_steps=2, lora=False)
    rm, before, _ = train_in_process(cfg)
    names = [n for n, _ in rm.named_parameters()]
    assert not any("lora_" in n for n in names)
    for name, p in rm.named_parameters():
        assert p.requires_grad
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"
    # saved as a whole causal LM + head; loads and scores the same
    rm.save(tmp_path / "saved", base=str(tiny_model_dir))
    assert (tmp_path / "saved" / "config.json").is_file()
    assert not (tmp_path / "saved" / "adapter_config.json").exists()
    texts = [("What is 2 plus 2?", "4."), ("Hi", "Hello!")]
    loaded = load_reward_model(tmp_path / "saved", dtype="fp32")
    torch.testing.assert_close(loaded.score(texts), rm.score(texts), rtol=1e-5, atol=1e-5)


def test_rankings_one_forward_per_answer_each_ranking_one_comparison(tmp_path, tiny_model_dir, monkeypatch):
    cfg = config(tmp_path, tiny_model_dir, write_rankings(tmp_path / "r.jsonl"), max_steps=1, batch_size=2)
    shapes = []
    original = rm_module.RewardModel.forward

    def spy(self, input_ids, attention_mask, shared=None):
        scores = original(self, input_ids, attention_mask, shared)
        shapes.append((input_ids.shape[0], scores.shape[0]))
        return scores

    monkeypatch.setattr(rm_module.RewardModel, "forward", spy)
    train_in_process(cfg)
    # one forward for the micro-batch: 2 rankings x 4 answers, not 2 x C(4, 2) x 2 sequences;
    # with the prompt shared (the default), one packed row per ranking
    assert shapes == [(2, 8)]
    cfg = config(
        tmp_path,
        tiny_model_dir,
        cfg.data,
        max_steps=1,
        batch_size=2,
        share_prompt=False,
        output=str(tmp_path / "b"),
    )
    shapes.clear()
    train_in_process(cfg)
    assert shapes == [(8, 8)]


def test_ranking_batch_weights_each_ranking_as_one_comparison(tokenizer):
    from alignkit.losses.reward import ranking_loss
    from alignkit.rewards.comparisons import Comparison

    ranking = Comparison([[5, 6], [7], [8, 9, 10]], (0, 1, 2), [1, 1, 2])
    pair = Comparison([[5], [6]], (0, 1), [1, 1])
    batch = collate([ranking, pair], pad_id=0)
    assert batch.input_ids.shape == (5, 3)
    assert batch.comparisons == 2
    assert float(batch.pair_weights.sum()) == pytest.approx(2.0)  # three pairs weigh 1, one pair weighs 1
    scores = torch.tensor([2.0, 1.0, 0.0, 0.5, 0.0])
    loss, _ = ranking_loss(scores, batch.better_idx, batch.worse_idx, batch.pair_weights)

    def nll(d: float) -> float:
        return float(-torch.nn.functional.logsigmoid(torch.tensor(d)))

    expected = 0.5 * (nll(1.0) + nll(2.0) + nll(1.0)) / 3 + 0.5 * nll(0.5)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_centering_is_logged_and_changes_the_loss(tmp_path, tiny_model_dir):
    data = write_pairs(tmp_path / "p.jsonl")
    rows = {}
    for c in (0.0, 1.0):
        cfg = config(
            tmp_path, tiny_model_dir, data, max_steps=2, center_rewards=c, output=str(tmp_path / f"run{c}")
        )
        train_in_process(cfg)
        rows[c] = read_metrics(Path(cfg.output) / "metrics.jsonl")
    first0, first1 = rows[0.0][0], rows[1.0][0]
    assert first1["loss/center"] > 0
    assert first0["loss/total"] == pytest.approx(first0["loss/bt"])
    assert first1["loss/total"] == pytest.approx(first1["loss/bt"] + first1["loss/center"], rel=1e-5)
    assert rows[0.0][1]["loss/total"] != pytest.approx(rows[1.0][1]["loss/total"])  # the update differed


def test_gradient_accumulation_invariance(tmp_path, tiny_model_dir):
    """Batch 1 x accumulation 4 gives the same update as batch 4 x 1 (fp32, no dropout)."""
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    weights = []
    for bs, accum in ((4, 1), (1, 4)):
        cfg = config(
            tmp_path,
            tiny_model_dir,
            data,
            max_steps=1,
            batch_size=bs,
            grad_accum=accum,
            output=str(tmp_path / f"r{bs}"),
        )
        rm, before, _ = train_in_process(cfg)
        weights.append({n: p.detach().clone() for n, p in rm.named_parameters() if p.requires_grad})
        assert any(not torch.equal(before[n], w) for n, w in weights[-1].items())
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- save / export
def test_run_saves_loads_and_exports_a_classifier_that_scores_identically(tmp_path, tiny_model_dir, capsys):
    from transformers import AutoModelForSequenceClassification

    from alignkit.rewards.encoding import pad_rows as pad_right

    data = write_pairs(tmp_path / "p.jsonl")
    out = tmp_path / "run"
    argv = [
        "rm",
        "--config",
        str(RECIPE),
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--output",
        str(out),
    ]
    assert main([*argv, "--quiet"]) == 0
    meta = json.loads((out / "reward_model" / "alignkit_model.json").read_text())
    assert meta["kind"] == "reward" and meta["adapter"] == "reward" and meta["max_length"] == 64
    assert (out / "reward_model" / "adapter_model.safetensors").is_file()

    rm = load_reward_model(out, dtype="fp32")
    texts = [("What is 2 plus 2?", "4."), ("Hello", "Hi there, how can I help?"), ("x", "")]
    scores = rm.score(texts)
    assert scores.shape == (3,)
    assert torch.equal(load_reward_model(out / "reward_model", dtype="fp32").score(texts), scores)

    assert main(["export", str(out), "--output", str(tmp_path / "exported"), "--quiet"]) == 0
    classifier = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "exported")).eval()
    encoded = encode_answers(rm.tokenizer, texts, rm.max_length)
    input_ids, attention_mask = pad_right([e.input_ids for e in encoded], rm.pad_id)
    with torch.no_grad():
        logits = classifier(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
    torch.testing.assert_close(logits, scores, rtol=1e-5, atol=1e-5)
    # our loader reads the exported checkpoint too, with the training max_length
    exported = load_reward_model(tmp_path / "exported", dtype="fp32")
    assert exported.max_length == 64
    torch.testing.assert_close(exported.score(texts), scores, rtol=1e-5, atol=1e-5)
    assert main(["export", str(out), "--output", str(tmp_path / "exported")]) == 2  # refuses to overwrite


def test_rm_json_summary_and_report_end_with_eval(tmp_path, tiny_model_dir, capsys):
    data = write_pairs(tmp_path / "p.jsonl", n=16)
    out = tmp_path / "run"
    rc = main(
        [
            "rm",
            "-c",
            str(RECIPE),
            "-m",
            str(tiny_model_dir),
            "--data",
            str(data),
            "-o",
            str(out),
            "--eval-split",
            "0.25",
            "--json",
            "--quiet",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["train_seconds"] > 0
    assert 0.0 <= summary["eval_accuracy"] <= 1.0
    report = json.loads((out / "report.json").read_text())
    assert list(report)[-1] == "eval"
    assert report["eval"]["pairs"] == 4 and report["eval_accuracy"] == summary["eval_accuracy"]
    metric_names = set().union(*(row.keys() for row in read_metrics(out / "metrics.jsonl")))
    for name in (
        "loss/total",
        "loss/bt",
        "loss/center",
        "reward/accuracy",
        "reward/margin",
        "reward/chosen",
        "reward/rejected",
        "train/lr",
        "train/grad_norm",
        "perf/tokens_per_s",
        "perf/forward_tokens_per_s",
        "perf/padding_efficiency",
        "perf/step_seconds",
        "eval/accuracy",
    ):
        assert name in metric_names
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "perf/tokens_per_s" in r]
    # the prompt is forwarded once per pair, so fewer tokens are computed than the pairs hold
    assert all(r["perf/forward_tokens_per_s"] < r["perf/tokens_per_s"] for r in rows)


# -------------------------------------------------------------------- resume
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, monkeypatch):
    data = write_pairs(tmp_path / "p.jsonl", n=10)
    common = {"max_steps": 4, "save_every": 2}
    a = config(tmp_path, tiny_model_dir, data, output=str(tmp_path / "a"), **common)
    rm_module.run_rm(a)

    class Crash(Exception):
        pass

    saved = checkpoints.save_checkpoint

    def save_then_crash(run, step, *args, **kwargs):
        path = saved(run, step, *args, **kwargs)
        if step == 2:
            raise Crash
        return path

    b = config(tmp_path, tiny_model_dir, data, output=str(tmp_path / "b"), **common)
    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        rm_module.run_rm(b)
    monkeypatch.setattr(checkpoints, "save_checkpoint", saved)
    assert [p.name for p in Run(tmp_path / "b").checkpoints()] == ["step-2"]
    rm_module.run_rm(
        config(tmp_path, tiny_model_dir, data, output=str(tmp_path / "b"), resume=True, **common)
    )

    rows_a = read_metrics(tmp_path / "a" / "metrics.jsonl")
    rows_b = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    assert rows_b[-1]["loss/total"] == pytest.approx(rows_a[-1]["loss/total"], rel=1e-5)
    assert rows_b[-1]["train/lr"] == pytest.approx(rows_a[-1]["train/lr"])
    from safetensors.torch import load_file

    for name in ("adapter_model.safetensors", "reward_head.safetensors"):
        wa = load_file(str(tmp_path / "a" / "reward_model" / name))
        wb = load_file(str(tmp_path / "b" / "reward_model" / name))
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_resume_before_the_first_checkpoint_logs_each_step_once(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    """Guards issue 24.1/24.2: killed while the first checkpoint is being written (its temp folder left
    behind), --resume starts over: metrics hold steps 1..N once, as an uninterrupted run's, and the
    leftover folder is gone (it used to log 1 2 1 2 3 4 and keep .step-2.XXXXXXXX forever)."""
    data = write_pairs(tmp_path / "p.jsonl", n=10)
    common = {"max_steps": 4, "save_every": 2}
    rm_module.run_rm(config(tmp_path, tiny_model_dir, data, output=str(tmp_path / "a"), **common))

    class Killed(Exception):
        pass

    def killed_while_writing(run, step, *args, **kwargs):
        (run.checkpoints_dir / f".step-{step}.qoo1hrw0").mkdir(parents=True)  # what a SIGKILL leaves
        raise Killed

    monkeypatch.setattr(checkpoints, "save_checkpoint", killed_while_writing)
    with pytest.raises(Killed):
        rm_module.run_rm(config(tmp_path, tiny_model_dir, data, output=str(tmp_path / "b"), **common))
    monkeypatch.undo()
    assert [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")] == [1, 2]
    assert Run(tmp_path / "b").checkpoints() == []
    monkeypatch.setattr(console, "_quiet", False)
    capsys.readouterr()
    rm_module.run_rm(
        config(tmp_path, tiny_model_dir, data, output=str(tmp_path / "b"), resume=True, **common)
    )
    err = capsys.readouterr().err

    rows_a = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "loss/total" in r]
    rows_b = [r for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if "loss/total" in r]
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert rb["loss/total"] == pytest.approx(ra["loss/total"], rel=1e-5)
    assert "no checkpoint" in err and "dropped the 2 metrics row(s)" in err
    assert not [p.name for p in (tmp_path / "b" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert "removed what an interrupted write left behind" in err


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    data = write_pairs(tmp_path / "p.jsonl")
    cfg = config(tmp_path, tiny_model_dir, data, max_steps=4, save_every=2)
    real_loss = rm_module.ranking_loss
    calls = {"n": 0}

    def nan_at_third(*args, **kwargs):
        calls["n"] += 1
        loss, stats = real_loss(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 3 else loss), stats

    monkeypatch.setattr(rm_module, "ranking_loss", nan_at_third)
    with pytest.raises(TrainingError, match=r"the loss became nan at step 3.*step-2"):
        rm_module.run_rm(cfg)
    run = Run(Path(cfg.output))
    assert [p.name for p in run.checkpoints()] == ["step-2"]
    state = json.loads((run.checkpoints()[0] / "trainer_state.json").read_text())
    assert state["step"] == 2
    from safetensors.torch import load_file

    weights = load_file(str(run.checkpoints()[0] / "trainable.safetensors"))
    assert weights and all(torch.isfinite(w).all() for w in weights.values())


# ---------------------------------------------------------------- bad input
def test_bad_line_exits_2_naming_file_and_line(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": \n')
    rc = main(["rm", "-m", str(tiny_model_dir), "--data", str(bad), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}:2" in err and "Traceback" not in err


def test_sft_data_is_refused_with_exit_2(tmp_path, tiny_model_dir, capsys):
    sft = tmp_path / "sft.jsonl"
    sft.write_text('{"prompt": "a", "completion": "b"}\n')
    rc = main(["rm", "-m", str(tiny_model_dir), "--data", str(sft), "-o", str(tmp_path / "run")])
    assert rc == 2 and "preference pairs or rankings" in capsys.readouterr().err


def _open_failing_for(path_part: str, code: int, after: int = 0):
    """``open`` raising ``OSError(code)`` naming no file (as a full disk does) for paths holding ``path_part``
    once ``after`` of them have opened for writing."""
    import builtins
    import os

    real, opened = builtins.open, [0]

    def fake(file, *args, **kwargs):
        if path_part in str(file) and "r" not in (args[0] if args else kwargs.get("mode", "r")):
            opened[0] += 1
            if opened[0] > after:
                raise OSError(code, os.strerror(code))
        return real(file, *args, **kwargs)

    return fake


def test_read_only_output_exits_2_naming_it_before_loading_the_model(
    tmp_path, tiny_model_dir, capsys, monkeypatch
):
    """Guards issue 24.3a: a read-only output was ``internal error: OSError`` (exit 1); now the run directory
    is probed before the model loads and the error names it and what to do (exit 2)."""
    import errno

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(rm_module, "build_reward_model", no_model)
    monkeypatch.setattr(
        "alignkit.runs.open", _open_failing_for(".alignkit-probe", errno.EROFS), raising=False
    )
    data = write_pairs(tmp_path / "p.jsonl")
    out = tmp_path / "ro"
    rc = main([*tiny_rm_args(tiny_model_dir, data, out), "--max-steps", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"error: {out}: cannot write (Read-only file system)" in err and "--output" in err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1


def test_disk_full_mid_run_exits_2_naming_the_metrics_file(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """Guards issue 24.3b: a disk that fills up after two steps was ``internal error: OSError: [Errno 28] No
    space left on device`` naming no file; now exit 2, naming metrics.jsonl and what to do."""
    import errno

    monkeypatch.setattr(
        "alignkit.runs.open", _open_failing_for("metrics.jsonl", errno.ENOSPC, after=2), raising=False
    )
    data = write_pairs(tmp_path / "p.jsonl")
    out = tmp_path / "run"
    rc = main([*tiny_rm_args(tiny_model_dir, data, out), "--max-steps", "4"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"error: {out / 'metrics.jsonl'}: cannot write (No space left on device); free some space" in err
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


def test_missing_data_option_exits_2(tmp_path, tiny_model_dir, capsys):
    assert main(["rm", "-m", str(tiny_model_dir), "-o", str(tmp_path / "run")]) == 2
    assert "--data is required" in capsys.readouterr().err


@pytest.fixture
def gpu_state_left_behind(monkeypatch):
    """accelerate's process-wide state as a GPU run leaves it (faked: the device is all that differs)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    Accelerator(cpu=True)
    PartialState._shared_state["device"] = torch.device("cuda", 0)
    yield PartialState
    AcceleratorState._reset_state(reset_partial_state=True)


def test_a_cpu_run_after_a_gpu_run_in_one_process(
    tmp_path, tiny_model_dir, capsys, monkeypatch, gpu_state_left_behind
):
    """Without `fresh_accelerate_state`: 'AcceleratorState has already been initialized' (exit 1)."""
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")  # also on a machine with a GPU
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    args = [*tiny_rm_args(tiny_model_dir, data, tmp_path / "r"), "--max-steps", "1", "--json", "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    assert gpu_state_left_behind._shared_state["device"].type == "cpu"


def test_a_launched_process_keeps_its_state(monkeypatch, gpu_state_left_behind):
    monkeypatch.setenv("WORLD_SIZE", "2")  # under accelerate launch / torchrun the launcher owns the state
    processes.fresh_accelerate_state()
    assert gpu_state_left_behind._shared_state["device"].type == "cuda"
    monkeypatch.setenv("WORLD_SIZE", "1")
    processes.fresh_accelerate_state()
    assert gpu_state_left_behind._shared_state == {}


def test_a_launched_process_destroys_its_process_group_at_exit(monkeypatch, tmp_path):
    """Left to interpreter shutdown, a gloo group can abort the process (SIGABRT); see `end_process_group`."""
    import atexit

    import torch.distributed as dist

    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(atexit, "unregister", lambda function: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    processes.fresh_accelerate_state()
    assert registered == [processes.end_process_group]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        registered[0]()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    processes.end_process_group()  # nothing to destroy: a no-op


def test_an_fp32_run_after_a_bf16_run_in_one_process_trains_in_fp32(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    """A bf16 accelerate state left by an earlier command (e.g. a TRL dpo run) must not leak into rm."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    losses = []
    for name in ("clean", "after-bf16"):
        if name == "after-bf16":  # what a TRL run in bf16 leaves behind
            AcceleratorState._reset_state(reset_partial_state=True)
            Accelerator(cpu=True, mixed_precision="bf16")
        assert main([*tiny_rm_args(tiny_model_dir, data, tmp_path / name), "--quiet"]) == 0, (
            capsys.readouterr().err
        )
        losses.append(
            [r["loss/total"] for r in read_metrics(tmp_path / name / "metrics.jsonl") if "loss/total" in r]
        )
    AcceleratorState._reset_state(reset_partial_state=True)
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], abs=1e-6)


def test_long_prompt_cut_on_the_left_answer_never_cut(tokenizer):
    prompt = "word " * 200
    answer = "the answer stays whole"
    (enc,) = encode_answers(tokenizer, [(prompt, answer)], max_length=40)
    assert enc is not None and len(enc.input_ids) == 40 and enc.prompt_cut > 0
    assert (
        tokenizer.decode(enc.input_ids)
        .rstrip()
        .endswith(tokenizer.decode(tokenizer(answer, add_special_tokens=False)["input_ids"]) + "<|im_end|>")
    )
    assert encode_answers(tokenizer, [("hi", "long " * 100)], max_length=40) == [None]


def test_overlength_answers_dropped_and_duplicates_counted(tmp_path, tiny_model_dir, capsys):
    long_pair = {"prompt": "Tell me a story.", "chosen": "Once " * 200, "rejected": "No."}
    dup = {
        "prompt": "What is 1 plus 1?",
        "chosen": "1 plus 1 is 2.",
        "rejected": "No idea, ask someone else. Really.",
    }
    data = write_pairs(tmp_path / "p.jsonl", extra=[long_pair, dup])
    out = tmp_path / "run"
    assert (
        main(["rm", "-c", str(RECIPE), "-m", str(tiny_model_dir), "--data", str(data), "-o", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert "dropped 1 comparison" in err and f"{data}:13" in err
    assert "1 duplicated comparison" in err and f"{data}:14" in err
    train = json.loads((out / "report.json").read_text())["data"]["train"]
    assert train == {"comparisons": 13, "dropped_overlength": 1, "truncated_prompts": 0, "duplicates": 1}


def test_empty_answer_is_a_real_answer(tokenizer):
    from alignkit.data.records import Message, Record

    rec = Record(
        (Message("user", "Insult me."),),
        chosen=(Message("assistant", ""),),
        rejected=(Message("assistant", "You fool."),),
        source="x:1",
    )
    data = prepare_comparisons([rec], tokenizer, 64)
    assert len(data.comparisons) == 1 and data.comparisons[0].answer_tokens[0] >= 1  # the end-of-turn token


# ------------------------------------------------------------------- score
def test_score_command_adds_scores_to_every_record(tmp_path, tiny_model_dir, capsys):
    data = write_pairs(tmp_path / "p.jsonl", n=6)
    out = tmp_path / "run"
    assert (
        main(["rm", "-c", str(RECIPE), "-m", str(tiny_model_dir), "--data", str(data), "-o", str(out), "-q"])
        == 0
    )
    sft = tmp_path / "sft.jsonl"
    sft.write_text(
        '{"prompt": "What is 3 plus 3?", "completion": "6."}\n{"prompt": "Hi", "completion": ""}\n'
    )
    for src, field in ((data, "scores"), (sft, "score")):
        target = tmp_path / f"scored-{src.stem}.jsonl"
        rc = main(
            [
                "score",
                "--reward-model",
                str(out),
                "--data",
                str(src),
                "--output",
                str(target),
                "--dtype",
                "fp32",
                "--json",
                "-q",
            ]
        )
        assert rc == 0
        summary = json.loads(capsys.readouterr().out)
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        assert len(rows) == summary["records"] and all(field in r for r in rows)
    rm = load_reward_model(out, dtype="fp32")
    expected = rm.score([("What is 3 plus 3?", "6."), ("Hi", "")])
    rows = [json.loads(line) for line in (tmp_path / "scored-sft.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == pytest.approx(expected.tolist(), abs=1e-5)
    assert rows[0]["completion"] == [{"role": "assistant", "content": "6."}]
    pairs = [json.loads(line) for line in (tmp_path / "scored-p.jsonl").read_text().splitlines()]
    assert all(len(r["scores"]) == 2 for r in pairs)


def test_score_refuses_prompt_only_data(tmp_path, tiny_model_dir, capsys):
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    out = tmp_path / "run"
    assert (
        main(["rm", "-c", str(RECIPE), "-m", str(tiny_model_dir), "--data", str(data), "-o", str(out), "-q"])
        == 0
    )
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n')
    rc = main(
        ["score", "--reward-model", str(out), "--data", str(prompts), "--output", str(tmp_path / "o.jsonl")]
    )
    assert rc == 2 and "no answers" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------- loop pieces
def test_length_grouped_batches_reproducible_and_complete():
    lengths = [(i * 37) % 101 for i in range(230)]
    a = loop.length_grouped_batches(lengths, 8, seed=1, epoch=0, mega=5)
    assert a == loop.length_grouped_batches(lengths, 8, seed=1, epoch=0, mega=5)
    assert a != loop.length_grouped_batches(lengths, 8, seed=1, epoch=1, mega=5)
    assert sorted(i for b in a for i in b) == list(range(230))
    assert max(lengths[i] for i in a[0]) == max(lengths)  # the longest batch comes first
    grouped = sum(max(lengths[i] for i in b) * len(b) for b in a)
    plain = sum(
        max(lengths[i] for i in b) * len(b)
        for b in loop.length_grouped_batches(lengths, 8, 1, 0, group=False)
    )
    assert grouped < plain  # less padding


def test_micro_batches_resume_from_cursor():
    def epoch(e):
        return [[e * 10 + i] for i in range(3)]

    cursor = loop.BatchCursor()
    stream = loop.micro_batches(epoch, cursor)
    first = [next(stream) for _ in range(4)]
    assert first == [[0], [1], [2], [10]] and (cursor.epoch, cursor.batch) == (1, 1)
    rest = loop.micro_batches(epoch, loop.BatchCursor(1, 1))
    assert next(rest) == [11]
    two = loop.micro_batches(epoch, loop.BatchCursor(), shard=(1, 2))
    assert [next(two) for _ in range(2)] == [[1], [11]]  # 3 batches: the odd one out is dropped


def test_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = loop.build_scheduler(opt, total_steps=10, warmup_ratio=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] < 0.05


def test_resolve_precision():
    assert resolve_precision("fp32", lora=True) == Precision("fp32", torch.float32, None)
    bf16 = resolve_precision("bf16", lora=True)
    assert bf16.frozen_dtype == torch.bfloat16 and bf16.autocast_dtype == torch.bfloat16
    assert resolve_precision("bf16", lora=False).frozen_dtype == torch.float32  # fp32 master weights


def test_bf16_training_runs_and_keeps_trainables_fp32(tmp_path, tiny_model_dir):
    cfg = config(tmp_path, tiny_model_dir, write_pairs(tmp_path / "p.jsonl"), max_steps=2, dtype="bf16")
    rm, before, run = train_in_process(cfg)
    for name, p in rm.named_parameters():
        if p.requires_grad:
            assert p.dtype == torch.float32, name
            assert not torch.equal(p.detach(), before[name])
        elif p.dim() >= 2:
            assert p.dtype == torch.bfloat16, name
    rows = read_metrics(run.metrics_path)
    assert all(torch.isfinite(torch.tensor(r["loss/total"])) for r in rows)


def test_activation_budget_checkpoints_only_long_batches(tiny_model):
    budget = memory.ActivationBudget(tiny_model, budget_bytes=1000.0, per_layer=10.0)
    assert len(budget.layers) == 2
    assert budget.plan(1, 40) == 0  # 40 tokens x 10 B x 2 layers = 800 B fit
    assert budget.plan(2, 40) == 1 and budget.layers[0].gradient_checkpointing
    assert not budget.layers[1].gradient_checkpointing
    assert budget.plan(1, 10_000) == 2
    assert memory.ActivationBudget(tiny_model, None, 10.0, always=True).plan(1, 1) == 2
    assert memory.ActivationBudget(tiny_model, None, 10.0).plan(1, 10**9) == 0
    # an attention that keeps its probabilities adds rows x width^2 x per_score to each layer
    scored = memory.ActivationBudget(tiny_model, budget_bytes=1000.0, per_layer=10.0, per_score=0.1)
    assert scored.plan(1, 20) == 0  # 2 x (200 + 40) B fit
    assert scored.plan(1, 40) == 1  # 2 x (400 + 160) B do not; one checkpointed layer keeps 20 B


def test_activation_budget_calibrates_its_estimate_on_what_autograd_keeps(tiny_model):
    decoder = tiny_model.model  # the layers without the LM head, as a reward model uses them
    # Embeddings that require grad (the frozen fixture model has no trainable weight): every layer keeps
    # its activations for the backward pass.
    embeds = decoder.embed_tokens(torch.randint(10, 200, (2, 24))).detach().requires_grad_()

    def forward_kept(budget: memory.ActivationBudget, rows: int, width: int) -> int:
        budget.plan(rows, width)
        with budget.measure():
            out = decoder(inputs_embeds=embeds[:rows, :width]).last_hidden_state
        out.float().sum().backward()
        return budget.last_saved_bytes

    probe = memory.ActivationBudget(tiny_model, budget_bytes=None, per_layer=1.0)
    small, big = forward_kept(probe, 1, 12), forward_kept(probe, 2, 24)
    assert 0 < small < big  # 4x the tokens keep more (and the 2 layers' weights are not counted)
    assert 3.0 < big / small < 5.0

    # An estimate 5x too high checkpoints a layer the measured bytes do not need, until a measured
    # micro-batch corrects it; a forward with every layer checkpointed teaches nothing about whole layers.
    per_token = big / (2 * 24 * 2)  # bytes per token and layer, measured (a little high: embeddings too)
    budget = memory.ActivationBudget(tiny_model, budget_bytes=6 * 2 * 24 * per_token, per_layer=5 * per_token)
    budget.always = True
    forward_kept(budget, 2, 24)
    assert budget.scale == 1.0
    budget.always = False
    assert budget.plan(2, 24) == 1
    forward_kept(budget, 2, 24)
    assert 0.1 < budget.scale < 0.4 and budget.plan(2, 24) == 0
    with torch.no_grad(), budget.measure():  # nothing is kept without gradients: no change
        decoder(inputs_embeds=embeds)
    assert budget.plan(2, 24) == 0


def test_checkpointing_gives_the_same_update(tmp_path, tiny_model_dir):
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    weights = []
    for name, extra in (("plain", {"activation_memory_gb": 0.0}), ("ckpt", {"gradient_checkpointing": True})):
        cfg = config(
            tmp_path, tiny_model_dir, data, max_steps=2, batch_size=4, output=str(tmp_path / name), **extra
        )
        rm, _, run = train_in_process(cfg)
        weights.append({n: p.detach().clone() for n, p in rm.named_parameters() if p.requires_grad})
        layers = [r["perf/checkpointed_layers"] for r in read_metrics(run.metrics_path)]
        assert layers == ([0, 0] if name == "plain" else [2, 2])
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_release_freed_memory_returns_free_heap_pages():
    # 2,000 heap blocks of 100 KB (below glibc's mmap threshold), every other one freed: the free
    # blocks sit between live ones, so glibc cannot shrink the heap by itself; the trim returns them.
    blocks = [torch.ones(25_000) for _ in range(2_000)]
    del blocks[::2]
    before = _rss_bytes()
    assert memory.release_freed_memory()
    assert before - _rss_bytes() > 50 * 2**20
    del blocks


@pytest.mark.parametrize("release", [True, False])
def test_rm_trims_once_per_step_only_when_asked(tmp_path, tiny_model_dir, monkeypatch, release):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1) or True)
    data = write_pairs(tmp_path / "p.jsonl", n=10)
    rm_module.run_rm(config(tmp_path, tiny_model_dir, data, max_steps=3, release_memory=release))
    assert len(calls) == (3 if release else 0)
