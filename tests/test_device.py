"""Where models run: `device.default_device`'s rules, and (on a CUDA machine) every command on the GPU.

The rules are checked anywhere with a monkeypatched ``torch.cuda.is_available``. The end-to-end tests need a
real GPU (they skip without one): each runs one command on the session's tiny Llama and asserts that CUDA
memory was allocated, i.e. that the command did not silently stay on the CPU. ``auto`` precision is bf16 on a
card that supports it, so those runs also cover the bf16 autocast paths on CUDA.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.errors import ConfigError
from alignkit.models import device as device_module
from factories import make_policy, make_reward_model

PROMPTS = ["What is the capital of France?", "Name a colour.", "Say something kind.", "What is 2 + 2?"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ------------------------------------------------------------------------------------------ the rules


@pytest.fixture
def no_device_env(monkeypatch):
    monkeypatch.delenv("ALIGNKIT_DEVICE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    return monkeypatch


def test_cpu_without_cuda(no_device_env):
    no_device_env.setattr(torch.cuda, "is_available", lambda: False)
    assert device_module.default_device() == torch.device("cpu")
    no_device_env.setenv("LOCAL_RANK", "1")  # a rank without a GPU still runs on the CPU
    assert device_module.default_device() == torch.device("cpu")


def test_cuda_of_the_local_rank(no_device_env):
    no_device_env.setattr(torch.cuda, "is_available", lambda: True)
    no_device_env.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_module.default_device() == torch.device("cuda", 0)
    no_device_env.setenv("LOCAL_RANK", "1")  # set per process by accelerate launch / torchrun
    assert device_module.default_device() == torch.device("cuda", 1)
    no_device_env.setenv("LOCAL_RANK", "2")  # more processes than cards: a clear error, not an NCCL one
    with pytest.raises(ConfigError, match="LOCAL_RANK=2 has no GPU of its own: this machine has 2"):
        device_module.default_device()


def test_accelerate_launch_on_the_cpu(no_device_env):
    """`accelerate launch --cpu` (or `use_cpu: true`, as in recipes/accelerate/multi_cpu.yaml) on a GPU machine."""
    no_device_env.setattr(torch.cuda, "is_available", lambda: True)
    no_device_env.setattr(torch.cuda, "device_count", lambda: 1)
    no_device_env.setenv("LOCAL_RANK", "1")
    no_device_env.setenv("ACCELERATE_USE_CPU", "True")  # what accelerate's launcher exports
    assert device_module.default_device() == torch.device("cpu")
    no_device_env.setenv("ACCELERATE_USE_CPU", "False")
    with pytest.raises(ConfigError, match="LOCAL_RANK=1"):
        device_module.default_device()
    no_device_env.setenv("ALIGNKIT_DEVICE", "cuda:0")  # ours wins
    no_device_env.setenv("ACCELERATE_USE_CPU", "True")
    assert device_module.default_device() == torch.device("cuda", 0)


def test_env_overrides(no_device_env):
    no_device_env.setattr(torch.cuda, "is_available", lambda: True)
    no_device_env.setenv("LOCAL_RANK", "1")
    no_device_env.setenv("ALIGNKIT_DEVICE", "cpu")
    assert device_module.default_device() == torch.device("cpu")
    no_device_env.setenv("ALIGNKIT_DEVICE", "cuda:3")
    assert device_module.default_device() == torch.device("cuda", 3)
    no_device_env.setenv("ALIGNKIT_DEVICE", "gpu-please")
    with pytest.raises(ConfigError, match="ALIGNKIT_DEVICE"):
        device_module.default_device()


def test_forced_cpu_loads_the_policy_on_the_cpu(no_device_env, tiny_model_dir):
    from alignkit.sampling.config import SampleConfig
    from alignkit.sampling.run import load_policy

    no_device_env.setenv("ALIGNKIT_DEVICE", "cpu")
    model, _, _ = load_policy(SampleConfig(model=str(tiny_model_dir), dtype="fp32"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}


# ---------------------------------------------------------------------------------- commands on a GPU


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("device")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    pairs = root / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}.", "rejected": "No idea."})
            + "\n"
            for i in range(8)
        )
    )
    return {"prompts": prompts, "pairs": pairs, "rm": make_reward_model(root / "rm", tiny_model_dir)}


@pytest.fixture
def on_gpu(monkeypatch):
    """The commands' default device (cuda:0 here); the peak-memory counter reset before the command."""
    monkeypatch.delenv("ALIGNKIT_DEVICE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert device_module.default_device().type == "cuda"
    torch.cuda.reset_peak_memory_stats()


def run_json(args: list[str], capsys) -> dict:
    rc = main([*args, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


def used_cuda() -> bool:
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() > 0


@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "auto"])
def test_sample_best_of_n_on_cuda(on_gpu, tiny_model_dir, files, tmp_path, capsys, dtype):
    out = tmp_path / "samples.jsonl"
    summary = run_json(
        ["sample", "--prompts", str(files["prompts"]), "--model", str(tiny_model_dir), "--output", str(out),
         "--best-of-n", "3", "--reward-model", str(files["rm"]), "--max-new-tokens", "8", "--dtype", dtype,
         "--quiet"],
        capsys,
    )  # fmt: skip
    assert used_cuda()
    assert summary["candidates"] == 3 * len(PROMPTS) and summary["new_tokens"] > 0
    assert len(out.read_text().splitlines()) == len(PROMPTS)


def _train_on_cuda(command: str, data: Path, model_dir: Path, tmp_path: Path, capsys, *extra: str) -> dict:
    """`alignkit <command>` with its tiny recipe for 2 steps; its summary, after checking that CUDA ran."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / f"{command}_tiny.yaml"
    summary = run_json(
        [command, "--config", str(recipe), "--model", str(model_dir), "--data", str(data),
         "--output", str(tmp_path / "run"), "--max-steps", "2", *extra, "--quiet"],
        capsys,
    )  # fmt: skip
    assert used_cuda()
    return summary


def _write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "auto"])
def test_rm_on_cuda(on_gpu, tiny_model_dir, files, tmp_path, capsys, dtype):
    summary = _train_on_cuda(
        "rm", files["pairs"], tiny_model_dir, tmp_path, capsys, "--eval-split", "0.25", "--dtype", dtype
    )
    assert summary["steps"] == 2 and summary["eval_accuracy"] is not None
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["eval"]["pairs"] > 0
    bf16 = dtype == "auto" and torch.cuda.is_bf16_supported()
    assert report["precision"] == ("bf16" if bf16 else "fp32")
    # `alignkit eval rm` on the trained model, on the GPU too
    torch.cuda.reset_peak_memory_stats()
    result = run_json(
        [
            "eval",
            "rm",
            "--reward-model",
            str(tmp_path / "run"),
            "--data",
            str(files["pairs"]),
            "--dtype",
            dtype,
        ],
        capsys,
    )
    assert used_cuda()
    assert result["pairs"] == 8


@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "auto"])
def test_ppo_on_cuda(on_gpu, tiny_model_dir, files, tmp_path, capsys, dtype):
    summary = run_json(
        ["ppo", "--model", str(tiny_model_dir), "--prompts", str(files["prompts"]), "--reward-model",
         str(files["rm"]), "--output", str(tmp_path / "run"), "--batch-size", "4", "--max-new-tokens", "6",
         "--max-length", "64", "--dtype", dtype, "--lora-r", "4", "--lora-alpha", "8", "--ppo-epochs", "2",
         "--num-mini-batches", "2", "--max-steps", "1", "--quiet"],
        capsys,
    )  # fmt: skip
    assert used_cuda()
    assert summary["steps"] == 1 and summary["final_reward"] is not None
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


@needs_cuda
def test_eval_policy_on_cuda(on_gpu, tiny_model_dir, files, tmp_path, capsys):
    policy = make_policy(tmp_path / "policy", tiny_model_dir)
    result = run_json(
        ["eval", "policy", "--policy", str(policy), "--prompts", str(files["prompts"]), "--reward-model",
         str(files["rm"]), "--n-samples", "2", "--max-new-tokens", "6", "--quiet"],
        capsys,
    )  # fmt: skip
    assert used_cuda()
    assert result["answers"] == 2 * len(PROMPTS) and result["kl"] is not None


@needs_cuda
@pytest.mark.parametrize("share", ["--share-prompt", "--no-share-prompt"])
def test_dpo_on_cuda(on_gpu, tiny_model_dir, files, tmp_path, capsys, share):
    """TRL's DPOTrainer with our LoRA wrapper (fused forward), with and without the shared-prompt forward."""
    summary = _train_on_cuda(
        "dpo", files["pairs"], tiny_model_dir, tmp_path, capsys, "--eval-split", "0.25", share
    )
    assert summary["steps"] == 2 and summary["eval_accuracy"] is not None
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


@needs_cuda
def test_kto_on_cuda(on_gpu, tiny_model_dir, tmp_path, capsys):
    rows = [
        {"prompt": f"What is {i} plus {i}?", "completion": f"It is {2 * i}." if i % 2 else "No idea.",
         "label": bool(i % 2)}
        for i in range(8)
    ]  # fmt: skip
    assert (
        _train_on_cuda("kto", _write(rows, tmp_path / "kto.jsonl"), tiny_model_dir, tmp_path, capsys)["steps"]
        == 2
    )


@needs_cuda
def test_sft_on_cuda(on_gpu, tiny_model_dir, tmp_path, capsys):
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"{i} plus {i} is {2 * i}."} for i in range(8)]
    assert (
        _train_on_cuda("sft", _write(rows, tmp_path / "sft.jsonl"), tiny_model_dir, tmp_path, capsys)["steps"]
        == 2
    )
