"""`alignkit dpo` on TRL's DPOTrainer: losses, reference, held-out metrics, outputs, resume, bad input.

Training tests run the session's tiny Llama (hidden 32, 2 layers) for a few steps in fp32 with
recipes/dpo_tiny.yaml.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.config import field_help
from alignkit.runs import read_metrics
from alignkit.trainers.dpo import pair_metrics
from alignkit.trainers.dpo_config import DPO_LOSSES, DPOConfig, loss_help
from alignkit.trainers.trl.data import DataStats, fit_prompt, fit_records, measure
from alignkit.trainers.trl.report import trend

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "dpo_tiny.yaml"
ALIGNKIT = [sys.executable, "-m", "alignkit.cli"]


def write_pairs(path: Path, n: int = 12, extra: list[dict] | None = None) -> Path:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "chosen": [{"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
            "rejected": [{"role": "assistant", "content": "No idea." + " Really." * (i % 3)}],
        }
        for i in range(n)
    ]
    rows += extra or []
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def dpo_args(tmp_path: Path, model_dir: Path, data: Path, *extra: str, name: str = "run") -> list[str]:
    return [
        "dpo",
        "--config",
        str(RECIPE),
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(tmp_path / name),
        "--json",
        "--quiet",
        *extra,
    ]


def run_json(args: list[str], capsys) -> dict:
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out.strip().splitlines()[-1])


class TrainerSpy:
    """Replace trl.DPOTrainer (etc.) by a subclass that keeps each instance and its starting weights."""

    def __init__(self, monkeypatch, name: str):
        import trl

        spy = self
        self.trainers: list = []
        self.start: list[dict[str, torch.Tensor]] = []
        original = getattr(trl, name)

        class Spy(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                spy.trainers.append(self)
                spy.start.append({n: p.detach().clone() for n, p in self.model.named_parameters()})

        monkeypatch.setattr(trl, name, Spy)

    def changes(self) -> tuple[list[str], list[str], list[str]]:
        """(LoRA params that changed, LoRA params that did not, base params that changed)."""
        trainer, start = self.trainers[-1], self.start[-1]
        lora_moved, lora_still, base_moved = [], [], []
        for name, param in trainer.model.named_parameters():
            moved = not torch.equal(param.detach(), start[name])
            if "lora_" in name:
                (lora_moved if moved else lora_still).append(name)
            elif moved:
                base_moved.append(name)
        return lora_moved, lora_still, base_moved


# ----------------------------------------------------------------------------------------- config/help
def test_every_trl_loss_type_is_in_the_table_and_the_help_is_generated_from_it():
    """The table must list exactly TRL 1.16's DPO loss types; `loss`'s docstring must be the table's text."""
    from trl import DPOConfig as TRLDPOConfig

    trl_help = TRLDPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert set(DPO_LOSSES) == set(re.findall(r"`'(\w+)'`", trl_help))
    # After editing DPO_LOSSES, regenerate the docstring: python -m alignkit.trainers.dpo_config
    assert field_help(DPOConfig, "loss") == loss_help()


def test_dpo_help_lists_each_loss_with_its_paper(capsys):
    assert main(["dpo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, (_, paper) in DPO_LOSSES.items():
        assert f"{name}:" in out
        assert paper.split(", ")[-1] in out  # the arXiv id


def test_unknown_loss_and_exo_without_smoothing_exit_2(tmp_path, capsys):
    data = write_pairs(tmp_path / "p.jsonl")
    assert main(["dpo", "--data", str(data), "--loss", "sigmoidd"]) == 2
    assert "unknown --loss sigmoidd" in capsys.readouterr().err
    assert main(["dpo", "--data", str(data), "--loss", "exo_pair"]) == 2
    assert "--label-smoothing > 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- metrics
def test_pair_metrics_by_hand():
    """beta = 0.5; rewards r = beta * (logp - ref):

    pair 0: r_w = 0.5 * (-1 - -2) = 0.5, r_l = 0.5 * (-3 - -3) = 0    -> win, diff 0.5
    pair 1: r_w = 0.5 * (-2 - -2) = 0,   r_l = 0.5 * (-4 - -4) = 0    -> tie (counts half), diff 0
    pair 2: r_w = 0.5 * (-3 - -2) = -0.5, r_l = 0.5 * (-1 - -2) = 0.5 -> loss, diff -1
    accuracy = (1 + 0.5 + 0) / 3 = 0.5; margin = (0.5 + 0 - 1) / 3 = -1/6;
    logratio_chosen = mean(chosen - ref_chosen) = (1 + 0 - 1) / 3 = 0;
    loss = mean(-log sigmoid(diff)) = (0.474077 + 0.693147 + 1.313262) / 3 = 0.826829.
    """
    m = pair_metrics(
        torch.tensor([-1.0, -2.0, -3.0]),
        torch.tensor([-3.0, -4.0, -1.0]),
        torch.tensor([-2.0, -2.0, -2.0]),
        torch.tensor([-3.0, -4.0, -2.0]),
        beta=0.5,
    )
    assert m["eval_pairs"] == 3
    assert m["eval_accuracy"] == pytest.approx(0.5)
    assert m["eval_margin"] == pytest.approx(-1 / 6)
    assert m["eval_logratio_chosen"] == pytest.approx(0.0)
    assert m["eval_loss"] == pytest.approx(0.826829, abs=1e-5)


def test_trend_detects_a_fall_throughout_but_not_a_dip():
    assert trend([-10, -11, -12, -13, -14, -15, -16, -17])["falls_throughout"] is True
    dip = trend([-10, -12, -14, -16, -12, -10, -9, -8])
    assert dip["falls_throughout"] is False and dip["last"] > dip["first"]
    assert trend([1.0]) is None


# ------------------------------------------------------------------------------------------ training
def test_lora_dpo_trains_every_adapter_weight_no_base_weight_and_reports_eval(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    spy = TrainerSpy(monkeypatch, "DPOTrainer")
    data = write_pairs(tmp_path / "p.jsonl")
    report = run_json(dpo_args(tmp_path, tiny_model_dir, data, "--eval-split", "0.25"), capsys)
    lora_moved, lora_still, base_moved = spy.changes()
    assert lora_moved and not lora_still, lora_still
    assert not base_moved, base_moved
    trainer = spy.trainers[-1]
    assert trainer.ref_model is None  # the reference is the base with the adapter disabled
    for key in ("steps", "train_seconds", "eval_accuracy", "eval_margin", "eval_pairs"):
        assert report[key] is not None, key
    assert report["steps"] == 3 and report["eval_pairs"] == 3
    assert 0.0 <= report["eval_accuracy"] <= 1.0
    assert report["reference"] == "the same weights with the adapter disabled"
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {k: saved[k] for k in ("steps", "eval_accuracy", "eval_margin", "eval_pairs")} == {
        k: report[k] for k in ("steps", "eval_accuracy", "eval_margin", "eval_pairs")
    }
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss/total" in r] == [1, 2, 3]
    assert any("eval/accuracy" in r for r in rows)


def test_untrained_adapter_scores_exactly_half(tmp_path, tiny_model_dir, capsys):
    """With lr 0 the policy equals the reference: every implicit reward is 0, every pair a tie."""
    data = write_pairs(tmp_path / "p.jsonl")
    report = run_json(
        dpo_args(tmp_path, tiny_model_dir, data, "--eval-split", "0.25", "--lr", "1e-12", "--max-steps", "1"),
        capsys,
    )
    assert report["eval_accuracy"] == pytest.approx(0.5, abs=1e-6)
    assert report["eval_margin"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", ["ipo", "hinge", "robust", "exo_pair", "nca_pair", "sigmoid,sft"])
def test_loss_types_run(tmp_path, tiny_model_dir, capsys, loss):
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    extra = ["--label-smoothing", "0.1"] if loss in ("robust", "exo_pair") else []
    report = run_json(
        dpo_args(tmp_path, tiny_model_dir, data, "--loss", loss, "--max-steps", "1", *extra), capsys
    )
    assert report["steps"] == 1 and report["loss"] == loss
    assert report["final_loss"] is not None and report["final_loss"] == report["final_loss"]  # not NaN


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(set(DPO_LOSSES) - {"ipo", "hinge", "robust", "exo_pair", "nca_pair"}))
def test_every_other_loss_type_runs(tmp_path, tiny_model_dir, capsys, loss):
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    report = run_json(dpo_args(tmp_path, tiny_model_dir, data, "--loss", loss, "--max-steps", "1"), capsys)
    assert report["steps"] == 1


def test_precomputed_reference_trains_like_the_live_one(tmp_path, tiny_model_dir, capsys):
    data = write_pairs(tmp_path / "p.jsonl")
    live = run_json(dpo_args(tmp_path, tiny_model_dir, data, "--eval-split", "0.25", name="live"), capsys)
    pre = run_json(
        dpo_args(tmp_path, tiny_model_dir, data, "--eval-split", "0.25", "--precompute-ref", name="pre"),
        capsys,
    )
    assert pre["final_loss"] == pytest.approx(live["final_loss"], abs=1e-5)
    assert pre["eval_margin"] == pytest.approx(live["eval_margin"], abs=1e-5)


def test_full_finetuning_keeps_a_frozen_reference_and_saves_a_checkpoint(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    from transformers import AutoModelForCausalLM

    spy = TrainerSpy(monkeypatch, "DPOTrainer")
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    report = run_json(dpo_args(tmp_path, tiny_model_dir, data, "--no-lora", "--max-steps", "2"), capsys)
    trainer = spy.trainers[-1]
    assert trainer.ref_model is not None
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())
    assert report["reference"].startswith("a frozen copy")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert moved  # every weight is trainable without LoRA
    # export copies the full checkpoint (nothing to merge) without the run's own files
    summary = run_json(["export", str(tmp_path / "run"), "-o", str(tmp_path / "out"), "--json", "-q"], capsys)
    assert summary["kind"] == "full" and summary["how"] == "copied"
    assert not (tmp_path / "out" / "config.yaml").exists() and not (tmp_path / "out" / "report.json").exists()
    copied = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in copied.named_parameters())


def test_adapter_loads_with_plain_peft_and_merge_matches(tmp_path, tiny_model_dir, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_pairs(tmp_path / "p.jsonl", n=4)
    run_json(dpo_args(tmp_path, tiny_model_dir, data, "--merge", "--max-steps", "2"), capsys)
    run = tmp_path / "run"
    meta = json.loads((run / "alignkit_model.json").read_text())
    assert meta["base"] == str(tiny_model_dir) and meta["kind"] == "policy" and meta["trainer"] == "dpo"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = PeftModel.from_pretrained(base, run)
    merged = AutoModelForCausalLM.from_pretrained(run / "merged")
    ids = torch.tensor([[1, 57, 300, 2, 9]])
    with torch.no_grad():
        a = peft_model(input_ids=ids).logits
        b = merged(input_ids=ids).logits
        c = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-6)  # the adapter changed the model
    # `alignkit export RUN` merges the adapter into a standalone causal LM with the adapter model's logits
    summary = run_json(
        ["export", str(run), "--output", str(tmp_path / "exported"), "--json", "--quiet"], capsys
    )
    assert summary["kind"] == "adapter" and summary["trainer"] == "dpo" and summary["how"] == "merged"
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, a, atol=1e-5)
    assert main(["export", str(run), "--output", str(tmp_path / "exported"), "--quiet"]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_dpo_can_start_from_an_adapter_run(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """--model RUN continues that adapter; the reference is a frozen copy of it (TRL's "ref" adapter)."""
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    run_json(dpo_args(tmp_path, tiny_model_dir, data, "--max-steps", "2", name="first"), capsys)
    spy = TrainerSpy(monkeypatch, "DPOTrainer")
    report = run_json(
        dpo_args(
            tmp_path, tmp_path / "first", data, "--max-steps", "1", "--eval-split", "0.5", name="second"
        ),
        capsys,
    )
    trainer = spy.trainers[-1]
    assert "ref" in trainer.model.peft_config
    assert report["eval_accuracy"] is not None
    meta = json.loads((tmp_path / "second" / "alignkit_model.json").read_text())
    assert meta["base"] == str(tiny_model_dir)  # the adapter replaces the first one on the same base


def test_kl_to_the_reference_is_zero_before_training_from_an_adapter_run(tmp_path, tiny_model_dir, capsys):
    """Guards issue 24.1: from an adapter run TRL's reference is the frozen copy "ref" of that adapter, so with
    lr ~0 eval_kl_ref must be ~0 (it was measured against the base with every adapter off: ~0.6 nats)."""
    from factories import make_policy

    start = make_policy(tmp_path / "start", tiny_model_dir, scale=0.3)
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    report = run_json(
        dpo_args(tmp_path, start, data, "--lr", "1e-12", "--max-steps", "1", "--eval-split", "0.5"), capsys
    )
    assert report["eval_kl_prompts"] > 0
    assert report["eval_kl_ref"] == pytest.approx(0.0, abs=1e-4)
    assert report["eval_margin"] == pytest.approx(0.0, abs=1e-5)


def test_eval_every_logs_held_out_metrics(tmp_path, tiny_model_dir, capsys):
    data = write_pairs(tmp_path / "p.jsonl")
    eval_data = write_pairs(tmp_path / "e.jsonl", n=3)
    report = run_json(
        dpo_args(tmp_path, tiny_model_dir, data, "--eval-data", str(eval_data), "--eval-every", "1"), capsys
    )
    assert [h["step"] for h in report["eval_history"]] == [1, 2]
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert sorted(r["step"] for r in rows if "eval/accuracy" in r) == [1, 2, 3]


# ------------------------------------------------------------------------------------------ bad input
def test_identical_pairs_are_skipped_and_counted(tmp_path, tiny_model_dir, capsys):
    same = {
        "prompt": [{"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Yes."}],
        "rejected": [{"role": "assistant", "content": "Yes."}],
    }
    data = write_pairs(tmp_path / "p.jsonl", n=4, extra=[same])
    rc = main([a for a in dpo_args(tmp_path, tiny_model_dir, data, "--max-steps", "1") if a != "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["skipped_identical_pairs"] == 1
    assert report["data"]["examples_identical"] == [f"{data}:5"]
    assert "skipped 1 pair(s) whose chosen and rejected answers are identical" in err


def test_other_invalid_records_stop_with_file_and_line(tmp_path, tiny_model_dir, capsys):
    bad = {
        "prompt": [{"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Yes."}],
    }
    data = write_pairs(tmp_path / "p.jsonl", n=4, extra=[bad])
    assert main(dpo_args(tmp_path, tiny_model_dir, data)) == 2
    err = capsys.readouterr().err
    assert f"{data}:5" in err and "--skip-invalid" in err


def test_reference_with_another_tokenizer_is_an_error(tmp_path, tiny_model_dir, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    other = tmp_path / "other"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["<|extra|>"])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(other)
    tok.save_pretrained(other)
    data = write_pairs(tmp_path / "p.jsonl", n=4)
    assert main(dpo_args(tmp_path, tiny_model_dir, data, "--no-lora", "--ref-model", str(other))) == 2
    assert "different tokenizer" in capsys.readouterr().err


def test_long_prompt_loses_oldest_turns_and_long_answers_are_dropped(tokenizer):
    from alignkit.data.records import Message, Record

    turns = tuple(
        Message("user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 30) for i in range(9)
    )
    rec = Record(
        prompt=turns,
        chosen=(Message("assistant", "short answer"),),
        rejected=(Message("assistant", "another short answer"),),
        source="x:1",
    )
    fitted, cut = fit_prompt(tokenizer, rec, max_length=120)
    assert cut and fitted is not None
    prompt_len, answer_lens = measure(tokenizer, fitted.prompt, fitted.answers())
    assert prompt_len + max(answer_lens) <= 120
    assert fitted.prompt[-1] == turns[-1]  # the newest turn is kept whole
    assert fitted.answers() == rec.answers()  # answers are never cut
    long = Record(
        prompt=turns[-1:],
        chosen=(Message("assistant", "word " * 200),),
        rejected=(Message("assistant", "no"),),
        source="x:2",
    )
    stats = DataStats()
    assert fit_records(tokenizer, [rec, long], 120, stats) == [fitted]
    assert stats.dropped_long == ["x:2"] and stats.prompts_cut == 1


# ----------------------------------------------------------------------------------- resume, accelerate
def _env(isolated_env: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ALIGNKIT_CACHE": str(isolated_env),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }


def test_resume_after_kill_reaches_the_same_final_loss(tmp_path, tiny_model_dir, isolated_env, capsys):
    """Kill a run (SIGKILL) once its first checkpoint exists; --resume must end where an uninterrupted run ends."""
    data = write_pairs(tmp_path / "p.jsonl", n=16)
    common_args = ["--max-steps", "8", "--save-every", "2", "--lr", "1e-3"]
    args = dpo_args(tmp_path, tiny_model_dir, data, *common_args, name="killed")
    proc = subprocess.Popen(
        ALIGNKIT + args, env=_env(isolated_env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = tmp_path / "killed" / "checkpoints" / "step-2"
    deadline = time.time() + 240
    while not first.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_dir()
    assert not (tmp_path / "killed" / "report.json").exists(), "the run finished before it could be killed"
    resumed = run_json([*args, "--resume"], capsys)
    assert resumed["resumed_from"] is not None
    straight = run_json(dpo_args(tmp_path, tiny_model_dir, data, *common_args, name="straight"), capsys)
    assert resumed["steps"] == straight["steps"] == 8
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], abs=1e-5)

    def losses(run: str) -> list[float]:
        return [r["loss/total"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if "loss/total" in r]

    assert losses("killed") == pytest.approx(losses("straight"), abs=1e-5)  # no duplicated or missing steps


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dpo_under_accelerate_launch_two_processes(tmp_path, tiny_model_dir, isolated_env):
    """`alignkit dpo` unchanged under `accelerate launch` with recipes/accelerate/multi_cpu.yaml."""
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes" / "accelerate" / "multi_cpu.yaml"),
        "--main_process_port",
        str(_free_port()),
    ]
    args = dpo_args(tmp_path, tiny_model_dir, data, "--max-steps", "2", "--save-every", "2")
    done = subprocess.run(
        [*launcher, "-m", "alignkit.cli", *args],
        env={**_env(isolated_env), "ALIGNKIT_DEVICE": "cpu"},  # torchrun tells no process `use_cpu`
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["world_size"] == 2
    assert report["process_steps"] == [2, 2]  # both processes trained
    run = tmp_path / "run"
    assert (run / "adapter_model.safetensors").is_file()
    assert len(list(run.glob("**/adapter_model.safetensors"))) == 2  # the adapter + the step-2 checkpoint's
    assert sorted(p.name for p in (run / "checkpoints" / "step-2").glob("rng_state_*.pth")) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]


def test_read_only_output_exits_2_before_the_policy_loads(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """Guards issue 24 (unwritable outputs) for the TRL trainers: the run directory is probed before the
    policy loads, and a read-only one is the user's error (exit 2) naming it."""
    import builtins
    import errno

    import alignkit.trainers.trl.setup as setup_module

    def no_model(*args, **kwargs):
        raise AssertionError("the policy was loaded before the output was checked")

    real_open = builtins.open

    def read_only_probe(file, *args, **kwargs):
        if ".alignkit-probe" in str(file):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(setup_module, "load_policy", no_model)
    monkeypatch.setattr("alignkit.runs.open", read_only_probe, raising=False)
    data = write_pairs(tmp_path / "p.jsonl")
    out = tmp_path / "ro"
    args = dpo_args(tmp_path, tiny_model_dir, data, "--max-steps", "1")
    args[args.index("--output") + 1] = str(out)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"{out}: cannot write (Read-only file system)" in err and "internal error" not in err
