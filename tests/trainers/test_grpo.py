"""`alignkit grpo` / `alignkit rloo` end to end on the tiny model: reward functions with columns, metrics,
warnings, resume, failures, data parallelism, and the run as a model for the other commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignkit.cli import main
from alignkit.config import build_config
from alignkit.errors import ConfigError
from alignkit.trainers.online.grpo_config import GRPOConfig, RLOOConfig
from factories import needs_compiler

pytestmark = pytest.mark.usefixtures("one_thread")


class Interrupt(Exception):
    pass


PROMPTS = [
    ("What is the capital of France?", "paris"),
    ("Name a colour.", "red"),
    ("Say something kind.", "nice"),
    ("How many legs has a cat?", "four"),
    ("What is 2 + 2?", "four"),
    ("Give me a fruit.", "apple"),
    ("Which season is coldest?", "winter"),
    ("Write one word.", "word"),
    ("Name an animal.", "cat"),
    ("Pick a number.", "seven"),
]

REWARDS = '''
CALLS = []

def letters(prompts, completions, target, **kwargs):
    """Reward answers that share letters with the record's `target` column (a column from the data)."""
    CALLS.append(len(completions))
    return [len(set(c.lower()) & set(t)) / len(set(t)) for c, t in zip(completions, target)]

def short(completions, **kwargs):
    return [-len(c) / 50 for c in completions]

def constant(prompts, completions, **kwargs):
    return [1.0] * len(completions)

def nothing(prompts, completions, **kwargs):
    return [None] * len(completions)

def some_none(prompts, completions, **kwargs):
    return [None if i % 3 == 0 else float(len(c) % 5) for i, c in enumerate(completions)]

SEEN = []

def second_call_fails(prompts, completions, **kwargs):
    SEEN.append(1)
    if len(SEEN) > 1:
        raise ValueError("cannot score " + completions[0][:10])
    return [float(len(c)) for c in completions]
'''


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "target": t}) + "\n" for p, t in PROMPTS))
    return path


@pytest.fixture(scope="module")
def rewards_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def args(command, model_dir, prompts, out, *extra):
    return [
        command, "--model", str(model_dir), "--prompts", str(prompts), "--output", str(out),
        "--batch-size", "2", "--group-size", "4", "--max-new-tokens", "6", "--max-length", "64",
        "--dtype", "fp32", "--lora-r", "4", "--lora-alpha", "8", "--lr", "1e-2", "--quiet", *extra,
    ]  # fmt: skip


def rows(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in (json.loads(line) for line in lines if line.strip()) if "eval" not in r]


def test_grpo_end_to_end_with_a_column_reading_function(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys
):
    out = tmp_path / "run"
    fn = f"{rewards_file}:letters"
    rc = main(args("grpo", tiny_model_dir, prompts_file, out, "--reward-fn", fn, "--reward-fn",
                   f"{rewards_file}:short", "--max-steps", "3", "--gold-judge", "simulated",
                   "--json"))  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3
    metrics = rows(out)
    assert [r["step"] for r in metrics] == [1, 2, 3]
    for key in ("grpo/loss", "grpo/clip_low", "grpo/clip_high", "grpo/entropy", "grpo/kl_k3", "kl/ref",
                "reward/score", "reward/letters", "reward/letters_std", "reward/short", "reward/short_std",
                "reward/frac_all_equal", "reward/group_std", "gen/truncated_frac", "gen/length",
                "gold/score"):  # fmt: skip
        assert key in metrics[0], key
    assert metrics[0]["kl/ref"] == pytest.approx(0.0, abs=1e-5)  # the adapter starts as the identity
    assert metrics[-1]["kl/ref"] != pytest.approx(0.0, abs=1e-7)
    # 10 prompts, eval split 0.1: one prompt held out, scored at the start and the end
    assert summary["eval_first_reward"] is not None and summary["eval_last_reward"] is not None
    assert [r["step"] for r in summary["eval"]] == [0, 3]
    # the policy adapter only: no value adapter, no value head
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "value").exists()
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and not any("value" in k for k in weights)
    meta = json.loads((out / "alignkit_model.json").read_text())
    assert meta["trainer"] == "grpo" and meta["kind"] == "policy"


@needs_compiler
def test_compile_trains_like_eager(tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys, monkeypatch):
    """--compile: the update's forwards go through the compiled layers, and the run matches an eager one."""
    from alignkit.models import compile as compile_module

    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    compiled_models = []
    real = compile_module.compile_layers
    monkeypatch.setattr(compile_module, "compile_layers", lambda m: compiled_models.append(m) or real(m))
    common = ("--reward-fn", f"{rewards_file}:short", "--max-steps", "2", "--eval-split", "0")
    for name, flag in (("eager", "--no-compile"), ("compiled", "--compile")):
        rc = main(args("grpo", tiny_model_dir, prompts_file, tmp_path / name, *common, flag))
        assert rc == 0, capsys.readouterr().err
    assert len(compiled_models) == 1
    eager, compiled = rows(tmp_path / "eager"), rows(tmp_path / "compiled")
    assert [r["reward/score"] for r in compiled] == [r["reward/score"] for r in eager]  # the same samples
    for key in ("grpo/loss", "kl/ref", "grpo/entropy"):
        assert [r[key] for r in compiled] == pytest.approx([r[key] for r in eager], abs=1e-4), key


def test_the_run_is_a_model_for_sample_eval_and_export(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(args("rloo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:short",
                     "--max-steps", "2")) == 0, capsys.readouterr().err  # fmt: skip
    assert json.loads((out / "alignkit_model.json").read_text())["trainer"] == "rloo"
    samples = tmp_path / "samples.jsonl"
    rc = main(["sample", "--policy", str(out), "--prompts", str(prompts_file), "--output", str(samples),
               "--max-new-tokens", "4", "--dtype", "fp32", "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert len(samples.read_text().splitlines()) == len(PROMPTS)
    rc = main(["export", str(out), "--output", str(tmp_path / "exported"), "--json", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["trainer"] == "rloo"
    rc = main(["plot", str(out), "--output", str(tmp_path / "plots"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert list((tmp_path / "plots").glob("*.png"))
    from alignkit.plots.sources import read_run

    assert read_run(out).command == "rloo"
    rc = main(["eval", "policy", "--policy", str(out), "--prompts", str(prompts_file), "--judge", "simulated",
               "--max-new-tokens", "4", "--limit", "3", "--dtype", "fp32", "--json", "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "win_rate" in capsys.readouterr().out


def test_rloo_defaults_and_kl_in_the_reward(tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys):
    cfg = build_config(RLOOConfig, None, {"prompts": "p.jsonl"})
    assert (cfg.advantage, cfg.loss_type, cfg.kl_in, cfg.beta) == ("rloo", "sequence", "reward", 0.05)
    out = tmp_path / "run"
    rc = main(args("rloo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:short",
                   "--max-steps", "3", "--beta", "0.5"))  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    metrics = rows(out)
    assert all(r["kl/coef"] == 0.5 for r in metrics)
    assert "rloo/loss" in metrics[0] and "rloo/clip_region" in metrics[0]
    # the KL in the reward: reward/total = score - beta * KL (the per-token terms summed)
    last = metrics[-1]
    assert last["reward/total"] == pytest.approx(last["reward/score_used"] - last["kl/penalty"], abs=1e-4)


@pytest.mark.parametrize(
    "extra",
    [
        ("--advantage", "reinforce++", "--loss-type", "bnpo"),
        ("--scale-rewards", "none", "--loss-type", "dr_grpo", "--epsilon-high", "0.28"),
        ("--num-iterations", "2", "--num-mini-batches", "2", "--loss-type", "grpo", "--mask-truncated"),
        ("--advantage", "rloo", "--normalize-advantages", "--beta", "0", "--kl-in", "reward"),
    ],
)
def test_estimators_and_losses_train(tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys, extra):
    out = tmp_path / "run"
    rc = main(args("grpo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:some_none",
                   "--max-steps", "2", *extra))  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    metrics = rows(out)
    assert len(metrics) == 2
    assert 0 < metrics[0]["reward/none_frac"] < 1  # None leaves its group; the run goes on
    assert metrics[-1]["grpo/updates"] == (4.0 if "--num-iterations" in extra else 1.0)
    assert all(v == v for r in metrics for k, v in r.items() if k.startswith("grpo/"))  # no NaN


def test_runs_that_learn_nothing_are_loud(tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(args("grpo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:constant",
                   "--reward-fn", f"{rewards_file}:nothing", "--reward-combine", "min", "--max-steps", "3",
                   "--all-equal-warn-steps", "2", "--eval-split", "0"))  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "equal for 2 steps" in err
    assert "'nothing' returned None for every answer" in err
    assert "cut at --max-new-tokens" in err  # 6 new tokens: most answers of the tiny model are cut
    report = json.loads((out / "report.json").read_text())
    assert any("equal for 2 steps" in w for w in report["warnings"])


def test_a_reward_function_that_raises_exits_1_and_keeps_the_checkpoint(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys
):
    out = tmp_path / "run"
    rc = main(args("grpo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:second_call_fails",
                   "--max-steps", "3", "--save-every", "1", "--eval-split", "0"))  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "reward function 'second_call_fails' failed on completion 0" in err
    assert "ValueError: cannot score" in err and "Traceback" not in err
    checkpoint = out / "checkpoints" / "step-1"
    assert checkpoint.is_dir() and not (out / "checkpoints" / "step-2").exists()
    assert [r["step"] for r in rows(out)] == [1]


def test_resume_matches_an_uninterrupted_run(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys, monkeypatch
):
    import alignkit.trainers.online.loop as loop_module

    extra = ("--reward-fn", f"{rewards_file}:letters", "--max-steps", "4", "--save-every", "2",
             "--num-iterations", "2")  # fmt: skip
    full = tmp_path / "full"
    assert main(args("grpo", tiny_model_dir, prompts_file, full, *extra)) == 0, capsys.readouterr().err

    broken = tmp_path / "broken"
    real = loop_module.make_experience

    def dying(*a, **k):
        if a[4] == 3:
            raise Interrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(loop_module, "make_experience", dying)
    monkeypatch.setenv("ALIGNKIT_DEBUG", "1")
    with pytest.raises(Interrupt):
        main(args("grpo", tiny_model_dir, prompts_file, broken, *extra))
    monkeypatch.setattr(loop_module, "make_experience", real)
    assert [r["step"] for r in rows(broken)] == [1, 2]
    assert main(args("grpo", tiny_model_dir, prompts_file, broken, *extra, "--resume")) == 0

    a, b = rows(full), rows(broken)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        for key, value in ra.items():
            if not key.startswith("perf/"):
                assert rb[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (ra["step"], key)
    wa = load_file(str(full / "adapter_model.safetensors"))
    wb = load_file(str(broken / "adapter_model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_config_names_match_the_losses():
    from alignkit.losses import group, policy_gradient
    from alignkit.trainers.online import grpo_config

    assert grpo_config.SCALES == group.SCALES and grpo_config.LOSS_TYPES == policy_gradient.LOSS_TYPES


def test_bad_options_are_one_line_errors(tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--group-size must be >= 2"):
        build_config(GRPOConfig, None, {"group_size": 1})
    with pytest.raises(ConfigError, match="--loss-type must be one of"):
        build_config(GRPOConfig, None, {"loss_type": "mean"})
    with pytest.raises(ConfigError, match="multiple of --num-mini-batches"):
        build_config(GRPOConfig, None, {"batch_size": 3, "group_size": 3, "num_mini_batches": 2})
    cases = [
        (("--reward-fn", f"{rewards_file}:missing"), "has no attribute 'missing'"),
        (("--reward-fn", "nope"), "unknown reward function 'nope'"),
        ((), "no reward: pass --reward-model"),
    ]
    for extra, message in cases:
        rc = main(args("grpo", tiny_model_dir, prompts_file, tmp_path / "bad", *extra, "--max-steps", "1"))
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err, err


def test_two_cpu_processes_under_accelerate_launch(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, isolated_env
):
    import os
    import shutil
    import subprocess
    import sys

    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists() and shutil.which("accelerate") is None:
        pytest.skip("the accelerate launcher is not installed")
    out = tmp_path / "run"
    cli = args("grpo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:letters",
               "--max-steps", "2", "--save-every", "1")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGNKIT_CACHE": str(isolated_env), "HF_HUB_OFFLINE": "1"}
    env["ALIGNKIT_DEVICE"] = "cpu"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "-m", "alignkit.cli", *cli]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = rows(out)
    assert [r["step"] for r in metrics] == [1, 2]
    assert all(r["train/processes"] == 2.0 for r in metrics)
    assert (out / "checkpoints" / "step-2").is_dir()


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo", "sequence"])
def test_chunked_update_equals_one_pass(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys, loss_type
):
    """The update runs --forward-batch-size rows at a time; the chunks' losses add up to the whole batch's,
    so one step gives the same weights whatever the chunk size."""
    weights = []
    for size in ("3", "64"):
        out = tmp_path / f"run-{size}"
        rc = main(args("grpo", tiny_model_dir, prompts_file, out, "--reward-fn", f"{rewards_file}:letters",
                       "--max-steps", "1", "--loss-type", loss_type, "--forward-batch-size", size,
                       "--grad-accum", "2", "--eval-split", "0", "--max-grad-norm", "0"))  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        weights.append(load_file(str(out / "adapter_model.safetensors")))
    a, b = weights
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-4) for k in a)
    assert any(not torch.allclose(a[k], torch.zeros_like(a[k])) for k in a if "lora_B" in k)  # it trained


def test_judges_as_rewards(tiny_model_dir, prompts_file, tmp_path, capsys):
    """--reward-judge simulated (pointwise) and a local LM judge (win rate inside each group) train a step."""
    out = tmp_path / "run"
    rc = main(args("grpo", tiny_model_dir, prompts_file, out, "--reward-judge", "simulated", "--reward-judge",
                   str(tiny_model_dir), "--reward-judge-weight", "1", "--reward-judge-weight", "0.5",
                   "--max-steps", "1", "--eval-split", "0"))  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    row = rows(out)[0]
    assert "reward/simulated" in row and 0.0 <= row["reward/judge"] <= 1.0
    # the win rates of a group average to 1/2 (every pair gives one win away)
    assert row["reward/judge"] == pytest.approx(0.5, abs=1e-5)


def test_ppo_takes_reward_functions_too(tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys):
    """The reward sources are the loop's: ppo trains on a function (None scores 0 there) with its value model."""
    out = tmp_path / "run"
    rc = main(["ppo", "--model", str(tiny_model_dir), "--prompts", str(prompts_file), "--output", str(out),
               "--reward-fn", f"{rewards_file}:some_none", "--batch-size", "4", "--max-new-tokens", "6",
               "--max-length", "64", "--dtype", "fp32", "--lora-r", "4", "--lora-alpha", "8", "--max-steps", "2",
               "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    metrics = rows(out)
    assert "reward/some_none" in metrics[0] and "ppo/value_loss" in metrics[0]
    assert all(v == v for r in metrics for k, v in r.items() if k.startswith("ppo/"))
    assert (out / "value" / "value_head.safetensors").is_file()


def test_shared_prompt_packing_gives_the_same_step(
    tiny_model_dir, prompts_file, rewards_file, tmp_path, capsys
):
    """--share-prompts (each group's prompt forwarded once, answers packed) against plain rows: one step,
    the same reference log-probs and the same weights (fp32)."""
    out = {}
    for flag in ("--share-prompts", "--no-share-prompts"):
        run = tmp_path / flag.strip("-")
        rc = main(args("grpo", tiny_model_dir, prompts_file, run, "--reward-fn", f"{rewards_file}:letters",
                       "--max-steps", "1", "--eval-split", "0", flag))  # fmt: skip
        assert rc == 0, capsys.readouterr().err
        out[flag] = (rows(run)[0], load_file(str(run / "adapter_model.safetensors")))
    (row_a, w_a), (row_b, w_b) = out.values()
    assert row_a["kl/ref"] == pytest.approx(row_b["kl/ref"], abs=1e-5)
    assert row_a["grpo/loss"] == pytest.approx(row_b["grpo/loss"], rel=1e-4, abs=1e-6)
    assert all(torch.allclose(w_a[k], w_b[k], atol=1e-6, rtol=1e-4) for k in w_a)


def test_packed_log_probs_equal_plain_ones(tiny_model_dir):
    """`packed_token_logps` against `token_logps` on groups with answers of different lengths (fp32)."""
    from alignkit.trainers.online.distributed import Dist
    from alignkit.trainers.online.models import build_models
    from alignkit.trainers.online.packed import can_pack, packed_token_logps
    from alignkit.trainers.online.rollout import sample

    cfg = build_config(GRPOConfig, None, dict(model=str(tiny_model_dir), prompts="p.jsonl", dtype="fp32",
                                              max_new_tokens=8, max_length=64, lora_r=4, lora_alpha=8))  # fmt: skip
    models = build_models(cfg, with_value=False)
    generator = torch.Generator().manual_seed(0)
    for name, p in sorted(models.policy.named_parameters()):
        if "lora_B" in name:
            p.data.copy_(torch.randn(p.shape, generator=generator) * 0.05)  # the policy differs from the base
    rollout = sample(models, [p for p, _ in PROMPTS[:3]], cfg, 1, Dist(), n=4)
    lengths = torch.tensor([8, 3, 5, 1] * 3)  # answers of several lengths (the tiny model never stops)
    P = rollout.sequence_ids.shape[1] - 8
    rollout.response_mask = torch.arange(8)[None, :] < lengths[:, None]
    rollout.sequence_mask = rollout.sequence_mask.clone()
    rollout.sequence_mask[:, P:] = rollout.response_mask
    with models.as_policy() as policy:
        assert can_pack(policy)
        plain, plain_entropy = models.token_logps(
            policy, rollout.sequence_ids, rollout.sequence_mask, rollout.response_ids, 0.7, with_entropy=True
        )
        packed, packed_entropy = packed_token_logps(
            models, policy, rollout.sequence_ids, rollout.sequence_mask, rollout.response_ids,
            rollout.response_mask, [i // 4 for i in range(12)], 0.7, with_entropy=True,
        )  # fmt: skip
    real = rollout.response_mask
    assert torch.allclose(packed[real], plain[real], atol=1e-4)
    assert torch.allclose(packed_entropy[real], plain_entropy[real], atol=1e-4)
    assert (packed[~real] == 0).all()
