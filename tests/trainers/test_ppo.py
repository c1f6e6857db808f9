"""`alignkit ppo` end to end on a tiny Llama: one shared base, the PPO details, resume, bad input.

Every run here is a few PPO steps of 4 prompts x 6 new tokens on the conftest's tiny model (hidden 32,
2 layers) with a tiny LoRA reward model trained by nobody (a random head on a random adapter): enough
to check the plumbing, not to learn anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignkit.cli import main
from alignkit.config import build_config
from alignkit.trainers.online.config import PPOConfig
from factories import make_reward_model

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = [
    "What is the capital of France?",
    "Name a colour.",
    "Say something kind.",
    "How many legs has a cat?",
    "What is 2 + 2?",
    "Give me a fruit.",
    "Which season is coldest?",
    "Write one word.",
]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tiny_model_dir):
    return make_reward_model(tmp_path_factory.mktemp("rm") / "reward_model", tiny_model_dir)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def base_args(model_dir, prompts, rm, out, *extra):
    return [
        "ppo", "--model", str(model_dir), "--prompts", str(prompts), "--reward-model", str(rm),
        "--output", str(out), "--batch-size", "4", "--max-new-tokens", "6", "--max-length", "64",
        "--dtype", "fp32", "--lora-r", "4", "--lora-alpha", "8", "--lr", "1e-2", "--ppo-epochs", "2",
        "--num-mini-batches", "2", "--temperature", "1.0", "--quiet", *extra,
    ]  # fmt: skip


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_end_to_end_lora_shared_base(tiny_model_dir, prompts_file, rm_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(base_args(tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "3", "--json"))
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3
    metrics = rows(out)
    assert [r["step"] for r in metrics] == [1, 2, 3]
    for key in ("ppo/policy_loss", "ppo/value_loss", "ppo/clipfrac", "ppo/approx_kl", "ppo/entropy",
                "kl/ref", "kl/coef", "reward/score", "reward/total", "reward/reward_model", "gen/length",
                "gen/truncated_frac", "gen/distinct_2", "perf/rollout_seconds", "perf/update_seconds"):  # fmt: skip
        assert key in metrics[0], key
    # before any update the policy (adapter B = 0) is the reference: KL exactly 0
    assert metrics[0]["kl/ref"] == 0.0
    assert metrics[1]["kl/ref"] != 0.0
    report = json.loads((out / "report.json").read_text())
    assert report["reward_models"][0]["shared_base"] is True
    assert report["steps"] == 3 and len(report["kl"]["curve"]) == 3
    # outputs: the policy adapter in the run dir, the value adapter + head beside it
    assert (out / "adapter_model.safetensors").is_file() and (out / "alignkit_model.json").is_file()
    assert (out / "value" / "value_head.safetensors").is_file()
    _check_export_matches_the_adapter(out, tiny_model_dir, tmp_path / "exported", capsys)


def _check_export_matches_the_adapter(run: Path, base_dir: Path, target: Path, capsys) -> None:
    """`alignkit export RUN`: the policy adapter merged into a causal LM with the adapter model's logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert main(["export", str(run), "--output", str(target), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kind"] == "adapter" and summary["trainer"] == "ppo"
    ids = torch.tensor([[1, 57, 300, 2, 9]])
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(target)(input_ids=ids).logits
        plain = base(input_ids=ids).logits
        adapted = PeftModel.from_pretrained(base, run)(input_ids=ids).logits
    assert not torch.allclose(adapted, plain, atol=1e-6)  # PPO moved the policy
    assert torch.allclose(merged, adapted, atol=1e-5)
    # the value model beside it is not a policy: exporting it is refused with a pointer to the run
    assert main(["export", str(run / "value"), "--output", str(target.with_name("v")), "--quiet"]) == 2
    assert "value model" in capsys.readouterr().err


def _cfg(model_dir, prompts, rm, **over):
    values = dict(
        model=str(model_dir), prompts=str(prompts), reward_model=[str(rm)], batch_size=4, max_new_tokens=6,
        max_length=64, dtype="fp32", lora_r=4, lora_alpha=8, lr=1e-2, ppo_epochs=2, num_mini_batches=2,
        temperature=1.0,
    )  # fmt: skip
    values.update(over)
    return build_config(PPOConfig, None, values)


def _setup(cfg):
    from alignkit.rewards.encoding import template_suffix_ids
    from alignkit.rewards.ensemble import load_reward_set
    from alignkit.trainers.online.distributed import Dist
    from alignkit.trainers.online.models import build_models, init_value_from_reward

    models = build_models(cfg)
    rewards = load_reward_set(
        cfg.reward_model, shared_model=models.policy, shared_base=models.base_name, dtype="fp32"
    )
    init_value_from_reward(models, Path(cfg.reward_model[0]))
    return models, rewards, Dist(), template_suffix_ids(models.tokenizer)


def test_one_update_trains_policy_and_value_only(tiny_model_dir, prompts_file, rm_dir):
    """LoRA: policy + value adapters and the value head change; the base and the reward adapter do not;
    and the reference still gives the plain base model's log-probs after the update."""
    from alignkit.losses.advantages import RunningMoments
    from alignkit.models import lora, registry
    from alignkit.trainers import loop
    from alignkit.trainers.online.experience import make_experience
    from alignkit.trainers.online.ppo import ppo_update

    cfg = _cfg(tiny_model_dir, prompts_file, rm_dir)
    models, rewards, dist, suffix = _setup(cfg)
    model = models.policy
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    head_before = models.value_head.score.weight.detach().clone()
    params = models.trainable()
    optimizer = loop.build_optimizer(params, cfg.lr, 0.0)
    exp = make_experience(models, rewards, PROMPTS[:4], cfg, 1, cfg.kl_coef, RunningMoments(), dist, suffix)
    assert exp.metrics["kl/ref"] == 0.0  # the untrained policy adapter is the identity
    stats = ppo_update(models, exp, params, optimizer, cfg, 1, dist, None)
    assert stats["ppo/updates"] == cfg.ppo_epochs * cfg.num_mini_batches

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, snapshot[n])}
    policy = {n for n in snapshot if ".policy." in n}
    value = {n for n in snapshot if ".value." in n}
    assert policy and value
    assert policy <= changed and value <= changed  # every trainable adapter tensor moved
    assert not any(".reward." in n for n in changed)  # the frozen reward adapter did not
    assert changed <= policy | value  # nothing of the base did
    assert not torch.equal(models.value_head.score.weight, head_before)

    # the reference = adapters off = the base model, to the last bit
    ids, mask, resp = exp.sequence_ids, exp.sequence_mask, exp.response_ids
    plain = registry.load_model(str(tiny_model_dir), dtype="fp32", device=ids.device)  # the rollout's device
    with models.as_reference() as ref:
        ref_logps = models.token_logps(ref, ids, mask, resp, cfg.temperature)[0]
    from alignkit.trainers.online.models import positions_of

    logits = plain(input_ids=ids, attention_mask=mask.long(), position_ids=positions_of(mask)).logits
    P = ids.shape[1] - resp.shape[1]
    expected = torch.log_softmax(logits[:, P - 1 : -1].float() / cfg.temperature, -1).gather(
        -1, resp[..., None]
    )[..., 0]
    assert torch.allclose(ref_logps[exp.response_mask], expected[exp.response_mask], atol=1e-5)
    assert torch.equal(ref_logps, exp.ref_logps)  # unchanged by the update
    assert lora.active_adapter(model) == "policy"


def test_missing_eos_penalty_and_adaptive_kl(tiny_model_dir, prompts_file, rm_dir, tmp_path, capsys):
    """The tiny random model never says EOS in 6 tokens: every score pays the penalty (1.0 by default);
    the adaptive controller moves beta (target 0.01 nats: KL above it raises beta)."""
    out = tmp_path / "run"
    args = base_args(tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "2", "--adaptive-kl", "--kl-target",
                     "0.01", "--kl-horizon", "10")  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    r1, r2 = rows(out)
    assert r1["reward/missing_eos_frac"] == 1.0
    assert r1["reward/score_used"] == pytest.approx(r1["reward/score"] - 1.0, abs=1e-5)
    assert r1["kl/coef"] == 0.05
    # step 1: KL 0 < target -> error clipped at -0.2: beta x (1 - 0.2 x 4 / 10)
    assert r1["kl/coef_next"] == pytest.approx(0.05 * (1 - 0.2 * 4 / 10))
    assert r2["kl/coef"] == pytest.approx(r1["kl/coef_next"])


class Interrupt(Exception):
    pass


def test_resume_matches_an_uninterrupted_run(
    tiny_model_dir, prompts_file, rm_dir, tmp_path, capsys, monkeypatch
):
    """Run 4 steps; run again but die after the step-2 checkpoint, then --resume: the same metrics."""
    import alignkit.trainers.online.loop as ppo_module

    extra = ("--max-steps", "4", "--save-every", "2", "--adaptive-kl", "--kl-target", "0.05", "--score-norm",
             "whiten")  # fmt: skip
    full = tmp_path / "full"
    assert main(base_args(tiny_model_dir, prompts_file, rm_dir, full, *extra)) == 0, capsys.readouterr().err

    broken = tmp_path / "broken"
    real = ppo_module.make_experience

    def dying(*args, **kwargs):
        if args[4] == 3:  # the step argument
            raise Interrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ppo_module, "make_experience", dying)
    monkeypatch.setenv("ALIGNKIT_DEBUG", "1")
    with pytest.raises(Interrupt):
        main(base_args(tiny_model_dir, prompts_file, rm_dir, broken, *extra))
    monkeypatch.setattr(ppo_module, "make_experience", real)
    assert [r["step"] for r in rows(broken)] == [1, 2]
    assert main(base_args(tiny_model_dir, prompts_file, rm_dir, broken, *extra, "--resume")) == 0

    a, b = rows(full), rows(broken)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        for key, value in ra.items():
            if key.startswith("perf/"):
                continue
            assert rb[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (ra["step"], key)
    wa = load_file(str(full / "adapter_model.safetensors"))
    wb = load_file(str(broken / "adapter_model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_resume_before_the_first_checkpoint_counts_each_step_once(
    tiny_model_dir, rm_dir, tmp_path, capsys, monkeypatch
):
    """Guards issue 24.1: killed while writing the first checkpoint, --resume started over but kept the lost
    attempt's rows (steps 1 2 1 2 3) and report.json summed its counters over them (prompts_truncated 8
    against 5); now the rows go and the report matches an uninterrupted run's."""
    import alignkit.trainers.online.loop as ppo_module

    prompts = tmp_path / "prompts.jsonl"
    long_prompt = "tell me " * 80
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:5] + [long_prompt] * 3))
    extra = ("--max-steps", "3", "--save-every", "2", "--ppo-epochs", "1")
    full = tmp_path / "full"
    assert main(base_args(tiny_model_dir, prompts, rm_dir, full, *extra)) == 0, capsys.readouterr().err

    def killed_while_writing(run, step, *args, **kwargs):
        (run.checkpoints_dir / f".step-{step}.qoo1hrw0").mkdir(parents=True)  # what a SIGKILL leaves
        raise Interrupt("killed")

    broken = tmp_path / "broken"
    monkeypatch.setattr(ppo_module, "save_checkpoint", killed_while_writing)
    monkeypatch.setenv("ALIGNKIT_DEBUG", "1")
    with pytest.raises(Interrupt):
        main(base_args(tiny_model_dir, prompts, rm_dir, broken, *extra))
    monkeypatch.undo()
    assert [r["step"] for r in rows(broken)] == [1, 2]
    assert main(base_args(tiny_model_dir, prompts, rm_dir, broken, *extra, "--resume")) == 0

    assert [r["step"] for r in rows(broken)] == [1, 2, 3]
    assert not [p for p in (broken / "checkpoints").iterdir() if p.name.startswith(".")]
    report_full = json.loads((full / "report.json").read_text())
    report = json.loads((broken / "report.json").read_text())
    assert report_full["prompts_truncated"] > 0
    assert report["prompts_truncated"] == report_full["prompts_truncated"]
    curve, curve_full = report["reward"]["curve"], report_full["reward"]["curve"]
    assert [s for s, _ in curve] == [1, 2, 3]
    assert [v for _, v in curve] == pytest.approx([v for _, v in curve_full], rel=1e-5, abs=1e-6)


def test_resume_with_another_config_names_the_key(tiny_model_dir, prompts_file, rm_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(base_args(tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "1")) == 0
    capsys.readouterr()
    rc = main(base_args(tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "2", "--resume", "--clip-range",
                        "0.3"))  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "clip_range" in err and "0.2" in err and "0.3" in err


def test_value_head_nan_stops_with_checkpoint_intact(
    tiny_model_dir, prompts_file, rm_dir, tmp_path, capsys, monkeypatch
):
    from alignkit.trainers.online.models import PPOModels

    real = PPOModels.values
    calls = {"n": 0}

    def diverging(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls["n"] += 1
        return out * float("nan") if calls["n"] > 1 + 2 * 2 else out  # step 1: 1 rollout + 4 update calls

    monkeypatch.setattr(PPOModels, "values", diverging)
    out = tmp_path / "run"
    rc = main(base_args(tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "3", "--save-every", "1"))
    err = capsys.readouterr().err
    assert rc == 1 and "value" in err and "NaN" in err
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["step-1"]
    state = json.loads((out / "checkpoints" / "step-1" / "trainer_state.json").read_text())
    assert state["step"] == 1
    weights = load_file(str(out / "checkpoints" / "step-1" / "trainable.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_two_reward_models_other_tokenizer_and_long_prompt(tiny_model_dir, rm_dir, tmp_path, capsys):
    """A second reward model on a byte-level tokenizer (another base) is re-tokenised from text and
    loaded on its own; a prompt longer than the context is cut from the left and counted."""
    import importlib.util

    from transformers import LlamaConfig, LlamaForCausalLM

    spec = importlib.util.spec_from_file_location("_conftest", Path(__file__).parents[1] / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    byte_tok = conftest.tiny_chatml_tokenizer()
    byte_base = tmp_path / "byte-base"
    config = LlamaConfig(vocab_size=len(byte_tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, max_position_embeddings=1024,
                         pad_token_id=0, eos_token_id=2, bos_token_id=1)  # fmt: skip
    torch.manual_seed(3)
    LlamaForCausalLM(config).save_pretrained(str(byte_base))
    byte_tok.save_pretrained(str(byte_base))
    byte_rm = make_reward_model(tmp_path / "byte-rm", byte_base, seed=4)

    prompts = tmp_path / "prompts.jsonl"
    long_prompt = "tell me " * 200
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:3] + [long_prompt]))
    out = tmp_path / "run"
    args = base_args(tiny_model_dir, prompts, rm_dir, out, "--max-steps", "1", "--reward-model", f"bytes={byte_rm}",
                     "--reward-weight", "1.0", "--reward-weight", "0.5", "--ppo-epochs", "1")  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    (r,) = rows(out)
    assert r["reward/score"] == pytest.approx(r["reward/reward_model"] + 0.5 * r["reward/bytes"], abs=1e-5)
    assert r["gen/prompts_truncated"] == 1.0
    report = json.loads((out / "report.json").read_text())
    assert report["retokenised_rows"] == {"bytes": 4}
    assert [m["shared_base"] for m in report["reward_models"]] == [True, False]
    assert report["prompts_truncated"] == 1
    assert any("lost their first tokens" in w for w in report["warnings"])


def test_config_validation():
    from alignkit.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of --num-mini-batches"):
        build_config(PPOConfig, None, {"batch_size": 6, "num_mini_batches": 4})
    with pytest.raises(ConfigError, match="one weight per reward model"):
        build_config(PPOConfig, None, {"reward_model": ["a", "b"], "reward_weight": [1.0]})
    with pytest.raises(ConfigError, match="go together"):
        build_config(PPOConfig, None, {"reward_combine": "gate"})
    cfg = build_config(PPOConfig, None, {"data": "p.jsonl"})
    assert cfg.prompts == "p.jsonl" and cfg.data is None  # --data is an alias of --prompts


def test_two_cpu_processes_under_accelerate_launch(
    tiny_model_dir, prompts_file, rm_dir, tmp_path, isolated_env
):
    """`accelerate launch --multi_gpu --num_processes 2` on CPUs: each process samples its own prompts; gradients are
    averaged (the run checks that both processes hold the same weights at every checkpoint)."""
    import os
    import shutil
    import subprocess
    import sys

    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists() and shutil.which("accelerate") is None:
        pytest.skip("the accelerate launcher is not installed")
    out = tmp_path / "run"
    args = base_args(tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "2", "--batch-size", "2",
                     "--save-every", "1")[1:]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGNKIT_CACHE": str(isolated_env), "HF_HUB_OFFLINE": "1"}
    env["ALIGNKIT_DEVICE"] = "cpu"  # CPU processes on a GPU machine too (rank 1 would need a second GPU)
    # on CPUs `--multi_gpu` is the way to get torchrun-style processes (gloo); `--cpu` would need mpirun
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "-m", "alignkit.cli", "ppo", *args]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = rows(out)
    assert [r["step"] for r in metrics] == [1, 2]
    assert all(r["train/processes"] == 2.0 for r in metrics)
    assert metrics[0]["kl/ref"] == 0.0 and metrics[1]["kl/ref"] != 0.0
    assert (out / "checkpoints" / "step-2").is_dir()


def test_sft_start_reference_is_the_sft_model(tiny_model_dir, prompts_file, rm_dir, tmp_path):
    """--sft RUN: the policy starts as base + SFT adapter and the reference is that same SFT model
    (a frozen copy of the adapter), so the KL is 0 before any update and non-zero against the base."""
    from alignkit.losses.advantages import RunningMoments
    from alignkit.models import lora, registry
    from alignkit.trainers.online.experience import make_experience

    torch.manual_seed(5)
    base = registry.load_model(str(tiny_model_dir), dtype="fp32")
    sft = lora.add_adapter(base, "default", lora.LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for p in lora.adapter_parameters(sft, "default"):
            p.normal_(0, 0.2)
    sft_dir = tmp_path / "sft"
    lora.save_adapter(sft, "default", sft_dir)
    registry.write_model_meta(sft_dir, base=str(tiny_model_dir), adapter="default", kind="sft")

    cfg = _cfg(tiny_model_dir, prompts_file, rm_dir, sft=str(sft_dir), model="ignored-base-name")
    models, rewards, dist, suffix = _setup(cfg)
    assert models.reference_adapter == "sft" and models.base_name == str(tiny_model_dir)
    exp = make_experience(models, rewards, PROMPTS[:4], cfg, 1, cfg.kl_coef, RunningMoments(), dist, suffix)
    assert exp.metrics["kl/ref"] == 0.0
    with lora.reference(models.policy) as plain_base:  # the raw base differs from the SFT model
        base_logps = models.token_logps(
            plain_base, exp.sequence_ids, exp.sequence_mask, exp.response_ids, 1.0
        )[0]
    assert not torch.allclose(base_logps[exp.response_mask], exp.ref_logps[exp.response_mask])


def test_full_finetuning_runs(tiny_model_dir, prompts_file, rm_dir, tmp_path, capsys):
    """--no-lora: separate policy, frozen reference copy, value model; the policy is saved whole."""
    out = tmp_path / "run"
    args = base_args(
        tiny_model_dir, prompts_file, rm_dir, out, "--max-steps", "2", "--no-lora", "--lr", "1e-3"
    )
    assert main(args) == 0, capsys.readouterr().err
    r1, r2 = rows(out)
    assert r1["kl/ref"] == 0.0 and r2["kl/ref"] != 0.0
    assert (out / "policy" / "config.json").is_file()
    # export copies the full policy checkpoint (nothing to merge)
    assert main(["export", str(out), "--output", str(tmp_path / "exported"), "--quiet"]) == 0
    from transformers import AutoModelForCausalLM

    policy = dict(AutoModelForCausalLM.from_pretrained(out / "policy").named_parameters())
    copied = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    assert all(torch.equal(p, policy[n]) for n, p in copied.named_parameters())
    meta = json.loads((tmp_path / "exported" / "alignkit_model.json").read_text())
    assert meta["format"] == "full" and meta["base"] == str(tiny_model_dir)
    report = json.loads((out / "report.json").read_text())
    assert {"reference", "value"} <= set(report["memory_bytes"])
