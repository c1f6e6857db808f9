"""`alignkit sample` end to end on the conftest's tiny Llama: plain sampling, best-of-n, exports, bad input.

The reward models are random LoRA adapters + heads saved in the `alignkit rm` layout (trained by nobody):
enough to check that the best candidate is the argmax of the scores, not that it is any good.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from factories import make_reward_model, needs_compiler

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["What is the capital of France?", "Name a colour.", "Say something kind.", "What is 2 + 2?"]
FAST = ["--max-new-tokens", "6", "--dtype", "fp32", "--quiet"]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tiny_model_dir):
    return make_reward_model(tmp_path_factory.mktemp("rm") / "reward_model", tiny_model_dir, seed=1)


@pytest.fixture(scope="module")
def byte_rm_dir(tmp_path_factory):
    """A reward model on another base with a byte-level tokenizer: the sampler's text is re-tokenised."""
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = importlib.util.spec_from_file_location("_conftest", Path(__file__).parent / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    byte_tok = conftest.tiny_chatml_tokenizer()
    root = tmp_path_factory.mktemp("byte")
    config = LlamaConfig(vocab_size=len(byte_tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=32, max_position_embeddings=1024,
                         pad_token_id=0, eos_token_id=2, bos_token_id=1)  # fmt: skip
    torch.manual_seed(3)
    LlamaForCausalLM(config).save_pretrained(str(root / "base"))
    byte_tok.save_pretrained(str(root / "base"))
    return make_reward_model(root / "rm", root / "base", seed=4)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_json(args: list[str], capsys) -> dict:
    rc = main(args + ["--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------- sampling


def test_plain_sampling_writes_k_candidates_that_label_reads(tiny_model_dir, prompts_file, tmp_path, capsys):
    from alignkit.data.load import load_records
    from alignkit.feedback.items import load_candidates

    out = tmp_path / "samples.jsonl"
    args = ["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--n-samples", "3",
            "--output", str(out), *FAST]  # fmt: skip
    summary = run_json(args, capsys)
    assert summary["mode"] == "sample" and summary["n"] == 3 and summary["prompts"] == 4
    assert "kl_bound" not in summary and summary["tokens_per_s"] > 0
    lines = read_jsonl(out)
    assert [line["prompt"] for line in lines] == [[{"role": "user", "content": p}] for p in PROMPTS]
    for line in lines:
        assert len(line["candidates"]) == 3
        for cand in line["candidates"]:
            assert set(cand) == {"text", "finished", "tokens"} and 1 <= cand["tokens"] <= 6
    assert summary["new_tokens"] == sum(c["tokens"] for line in lines for c in line["candidates"])
    assert load_candidates(out).format == "sample"  # what `alignkit label` / `judge` read
    assert len(load_records(out, kind="prompt").records) == 4  # and the loaders, as prompts

    again = tmp_path / "again.jsonl"
    run_json(args[: -len(FAST) - 2] + ["--output", str(again), *FAST], capsys)
    assert again.read_text() == out.read_text()  # same seed, same samples
    other = tmp_path / "other.jsonl"
    run_json(args[: -len(FAST) - 2] + ["--output", str(other), "--seed", "7", *FAST], capsys)
    assert other.read_text() != out.read_text()


@needs_compiler
def test_compile_gives_the_eager_samples(tiny_model_dir, prompts_file, tmp_path, capsys, monkeypatch):
    from alignkit.sampling import decoder as dec

    real, calls = dec._compiled_call, []

    def counting():
        compiled = real()
        return lambda model, inputs: calls.append(1) or compiled(model, inputs)

    monkeypatch.setattr(dec, "_compiled_call", counting)
    args = ["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--n-samples", "2",
            *FAST]  # fmt: skip
    eager, compiled = tmp_path / "eager.jsonl", tmp_path / "compiled.jsonl"
    run_json(args + ["--output", str(eager)], capsys)
    assert not calls
    run_json(args + ["--output", str(compiled), "--compile"], capsys)
    assert calls  # the decode steps went through the compiled function
    assert compiled.read_text() == eager.read_text()


def test_best_of_n_picks_the_argmax_and_exports(tiny_model_dir, rm_dir, prompts_file, tmp_path, capsys):
    from alignkit.data.load import load_records

    out, pairs, sft = tmp_path / "best.jsonl", tmp_path / "pairs.jsonl", tmp_path / "sft.jsonl"
    summary = run_json(
        ["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--best-of-n", "4",
         "--reward-model", str(rm_dir), "--output", str(out), "--export-pairs", str(pairs),
         "--export-sft", str(sft), *FAST],
        capsys,
    )  # fmt: skip
    for key in ("n", "kl_bound", "mean_best_score", "mean_score", "prompts", "tokens_per_s", "rewards"):
        assert key in summary
    assert summary["n"] == 4 and summary["prompts"] == 4
    assert summary["kl_bound"] == pytest.approx(math.log(4) - 3 / 4)
    lines = read_jsonl(out)
    all_scores = [c["score"] for line in lines for c in line["candidates"]]
    best_scores = []
    for line in lines:
        scores = [c["score"] for c in line["candidates"]]
        assert len(scores) == 4
        assert line["chosen_index"] == scores.index(max(scores))
        assert line["worst_index"] == scores.index(min(scores))
        assert line["best"] == line["candidates"][line["chosen_index"]]["text"]
        assert all(c["scores"]["reward_model"] == pytest.approx(c["score"]) for c in line["candidates"])
        best_scores.append(max(scores))
    assert summary["mean_score"] == pytest.approx(sum(all_scores) / 16, abs=1e-6)
    assert summary["mean_best_score"] == pytest.approx(sum(best_scores) / 4, abs=1e-6)
    assert summary["mean_best_score"] >= summary["mean_score"]
    assert summary["rewards"]["reward_model"]["mean_best"] == pytest.approx(
        summary["mean_best_score"], abs=1e-6
    )

    preference = load_records(pairs).records
    assert all(r.kind == "preference" for r in preference) and len(preference) == summary["pairs"]
    with_pair = [line for line in lines if line["candidates"][line["worst_index"]]["text"] != line["best"]]
    assert [r.chosen[0].content for r in preference] == [line["best"] for line in with_pair]
    assert [r.rejected[0].content for r in preference] == [
        line["candidates"][line["worst_index"]]["text"] for line in with_pair
    ]
    winners = load_records(sft, kind="sft").records
    assert [r.completion[0].content for r in winners] == [line["best"] for line in lines]


def test_two_reward_models_other_tokenizer_weights_and_gate(
    tiny_model_dir, rm_dir, byte_rm_dir, prompts_file, tmp_path, capsys
):
    """Weighted sum over a same-tokenizer and a byte-tokenizer reward model (re-tokenised, counted); then a
    gate on the byte model at its median score: failing candidates never beat a passing one."""
    base = ["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--best-of-n", "4",
            "--reward-model", f"a={rm_dir}", "--reward-model", f"b={byte_rm_dir}", *FAST]  # fmt: skip
    out = tmp_path / "sum.jsonl"
    summary = run_json(
        base + ["--reward-weight", "1", "--reward-weight", "0.5", "--output", str(out)], capsys
    )
    assert summary["retokenised"] == {"b": 16}
    assert [summary["rewards"][k]["shared_base"] for k in ("a", "b")] == [False, False]  # a plain --model
    lines = read_jsonl(out)
    for c in (c for line in lines for c in line["candidates"]):
        assert c["score"] == pytest.approx(c["scores"]["a"] + 0.5 * c["scores"]["b"], abs=1e-5)

    threshold = sorted(c["scores"]["b"] for line in lines for c in line["candidates"])[8]
    gated = tmp_path / "gated.jsonl"
    summary = run_json(base + ["--gate", f"b:{threshold}", "--output", str(gated)], capsys)
    assert summary["gate_pass_rate"] == pytest.approx(0.5)
    for line in read_jsonl(gated):
        cands = line["candidates"]
        assert all(c["passed_gate"] == (c["scores"]["b"] >= threshold) for c in cands)
        passing = [i for i, c in enumerate(cands) if c["passed_gate"]]
        pool = passing or range(len(cands))
        assert line["chosen_index"] == max(pool, key=lambda i: (cands[i]["score"], -i))
        if passing:  # above the gate the score is the other model's
            assert all(cands[i]["score"] == pytest.approx(cands[i]["scores"]["a"]) for i in passing)


def test_min_combine(tiny_model_dir, rm_dir, byte_rm_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "min.jsonl"
    run_json(["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--best-of-n", "3",
              "--reward-model", f"a={rm_dir}", "--reward-model", f"b={byte_rm_dir}", "--reward-weight", "2",
              "--reward-weight", "1", "--combine", "min", "--output", str(out), *FAST], capsys)  # fmt: skip
    for line in read_jsonl(out):
        for c in line["candidates"]:
            assert c["score"] == pytest.approx(min(2 * c["scores"]["a"], c["scores"]["b"]), abs=1e-5)
        scores = [c["score"] for c in line["candidates"]]
        assert line["chosen_index"] == scores.index(max(scores))


def test_policy_run_dir_loads_its_adapter(tiny_model_dir, rm_dir, prompts_file, tmp_path, capsys):
    """--policy RUN (a LoRA adapter run, as dpo/sft/ppo save one) samples from base + adapter: with the same
    seed the answers differ from the base model's. A same-base reward model joins the policy's base as one
    more adapter, and sampling still uses the policy adapter (same candidates as without it)."""
    from alignkit.models import lora, registry

    run = tmp_path / "policy-run"
    model = lora.add_adapter(registry.load_model(str(tiny_model_dir), dtype="fp32"), "policy",
                             lora.LoraSettings(r=4, alpha=8))  # fmt: skip
    torch.manual_seed(5)
    with torch.no_grad():
        for p in lora.adapter_parameters(model, "policy"):
            p.normal_(0, 0.5)
    lora.save_adapter(model, "policy", run)
    registry.write_model_meta(run, base=str(tiny_model_dir), adapter="policy", kind="policy")
    common = ["sample", "--prompts", str(prompts_file), "--n-samples", "2", *FAST]
    run_json(common + ["--policy", str(run), "--output", str(tmp_path / "p.jsonl")], capsys)
    run_json(common + ["--model", str(tiny_model_dir), "--output", str(tmp_path / "b.jsonl")], capsys)
    assert (tmp_path / "p.jsonl").read_text() != (tmp_path / "b.jsonl").read_text()
    best = tmp_path / "best.jsonl"
    summary = run_json(["sample", "--prompts", str(prompts_file), "--best-of-n", "2", "--reward-model",
                        str(rm_dir), "--policy", str(run), "--output", str(best), *FAST], capsys)  # fmt: skip
    assert summary["rewards"]["reward_model"]["shared_base"] is True
    texts = [[c["text"] for c in line["candidates"]] for line in read_jsonl(best)]
    assert texts == [[c["text"] for c in line["candidates"]] for line in read_jsonl(tmp_path / "p.jsonl")]


def test_long_prompt_is_cut_from_the_left_and_counted(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "long.jsonl"
    prompts.write_text(json.dumps({"prompt": "tell me " * 400}) + "\n" + json.dumps({"prompt": "Hi"}) + "\n")
    out = tmp_path / "out.jsonl"
    summary = run_json(["sample", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--output", str(out),
                        *FAST], capsys)  # fmt: skip
    assert summary["truncated_prompts"] == 1
    first, second = read_jsonl(out)
    assert first["prompt_truncated"] > 0 and "prompt_truncated" not in second


# ---------------------------------------------------------------------------------------------- bad input


def test_best_of_n_with_a_reward_function_reads_columns_and_skips_none(tiny_model_dir, tmp_path, capsys):
    """A TRL-signature function as the rerank score: it sees each record's other columns per candidate, and
    a None (no score) is never chosen while a scored candidate is left; all-None prompts export no pair."""
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "Say something.", "target": "a"}, {"prompt": "Name a colour.", "target": "e"},
            {"prompt": "Say hello.", "target": None}]  # fmt: skip
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fn = tmp_path / "count.py"
    fn.write_text(
        "def count(prompts, completions, target, **kwargs):\n"
        "    return [None if t is None or len(c) % 3 == 0 else float(c.count(t))\n"
        "            for c, t in zip(completions, target)]\n"
    )
    out, pairs, sft = tmp_path / "best.jsonl", tmp_path / "pairs.jsonl", tmp_path / "sft.jsonl"
    summary = run_json(
        ["sample", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--best-of-n", "4",
         "--reward-fn", f"{fn}:count", "--output", str(out), "--export-pairs", str(pairs),
         "--export-sft", str(sft),
         "--temperature", "1.5", *FAST],
        capsys,
    )  # fmt: skip
    lines = read_jsonl(out)
    for row, line in zip(rows, lines, strict=True):
        texts = [c["text"] for c in line["candidates"]]
        expect = [
            None if row["target"] is None or len(t) % 3 == 0 else float(t.count(row["target"])) for t in texts
        ]
        got = [c["score"] for c in line["candidates"]]  # null where the function gave None
        assert got == expect
        scored = [s for s in expect if s is not None]
        if scored:
            assert expect[line["chosen_index"]] == max(scored)
            assert expect[line["worst_index"]] == min(scored)
    scored = [c["score"] for line in lines for c in line["candidates"] if c["score"] is not None]
    assert summary["mean_score"] == pytest.approx(sum(scored) / len(scored))
    assert "count" in summary["rewards"]
    assert len(read_jsonl(pairs)) == summary["pairs"] <= 2  # the all-None prompt gives no pair
    unscored = [line for line in lines if all(c["score"] is None for c in line["candidates"])]
    assert lines[2] in unscored and lines[2]["chosen_index"] == 0 and lines[2]["best_score"] is None
    assert len(read_jsonl(sft)) == summary["sft"] == len(lines) - len(unscored)  # nor an SFT example


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--best-of-n", "0", "--reward-model", "x"], "--best-of-n must be >= 1"),
        (["--n-samples", "0"], "--n-samples must be >= 1"),
        (["--best-of-n", "4"], "--best-of-n needs at least one --reward-model"),
        (["--reward-fn", "length"], "add --best-of-n"),
        (
            [
                "--best-of-n",
                "2",
                "--reward-fn",
                "length",
                "--reward-fn-weight",
                "1",
                "--reward-fn-weight",
                "2",
            ],
            "one weight per reward function",
        ),  # fmt: skip
        (["--n-samples", "2", "--best-of-n", "2", "--reward-model", "x"], "not both"),
        (["--export-pairs", "p.jsonl"], "--export-pairs needs --best-of-n"),
        (["--best-of-n", "2", "--reward-model", "x", "--gate", "x0.5"], "NAME:THRESHOLD"),
        (
            ["--best-of-n", "2", "--reward-model", "x", "--reward-weight", "1", "--reward-weight", "2"],
            "one weight per reward model",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(extra, message, tiny_model_dir, prompts_file, tmp_path, capsys):
    rc = main(["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--output",
               str(tmp_path / "o.jsonl"), *FAST, *extra])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and err.startswith("error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_empty_prompt_file_exits_2(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rc = main(["sample", "--prompts", str(empty), "--model", str(tiny_model_dir), "--output",
               str(tmp_path / "o.jsonl"), *FAST])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "empty" in err and str(empty) in err and len(err.splitlines()) == 1


def test_unknown_gate_name_and_existing_output_exit_2(tiny_model_dir, rm_dir, byte_rm_dir, prompts_file,
                                                       tmp_path, capsys):  # fmt: skip
    out = tmp_path / "o.jsonl"
    args = [
        "sample",
        "--prompts",
        str(prompts_file),
        "--model",
        str(tiny_model_dir),
        "--best-of-n",
        "2",
        "--reward-model",
        f"a={rm_dir}",
        "--reward-model",
        f"b={byte_rm_dir}",
        "--output",
        str(out),
        *FAST,
    ]
    assert main(args + ["--gate", "safety:0"]) == 2
    assert "not one of the reward models" in capsys.readouterr().err
    assert not out.exists()
    out.write_text("keep me\n")
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me\n"


def test_missing_prompts_or_policy_exit_2(tiny_model_dir, prompts_file, tmp_path, capsys):
    assert main(["sample", "--model", str(tiny_model_dir), "--output", str(tmp_path / "o.jsonl"), *FAST]) == 2
    assert "--prompts" in capsys.readouterr().err
    assert main(["sample", "--prompts", str(prompts_file), "--policy", str(tmp_path / "nope"),
                 "--output", str(tmp_path / "o.jsonl"), *FAST]) == 2  # fmt: skip
    assert "no such run directory" in capsys.readouterr().err


def test_recipes_resolve():
    from alignkit.config import build_config
    from alignkit.sampling.config import SampleConfig

    root = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("sample.yaml", "sample_tiny.yaml"):
        cfg = build_config(SampleConfig, root / name, {})
        assert cfg.samples_per_prompt >= 1


def test_no_share_prompts_reaches_the_sampler(tiny_model_dir, prompts_file, tmp_path, capsys, monkeypatch):
    from alignkit.sampling import decoder as dec
    from alignkit.sampling import generate as gen

    seen = []
    real = dec.Decoder.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append(self.shared)

    monkeypatch.setattr(dec.Decoder, "__init__", spy)
    monkeypatch.setattr(gen, "_sharing_pays", lambda *args: True)  # as on a CPU with the native kernel
    args = ["sample", "--prompts", str(prompts_file), "--model", str(tiny_model_dir), "--n-samples", "2",
            *FAST]  # fmt: skip
    shared, copied = tmp_path / "shared.jsonl", tmp_path / "copied.jsonl"
    run_json(args + ["--output", str(shared)], capsys)
    run_json(args + ["--output", str(copied), "--no-share-prompts"], capsys)
    assert seen == [True, False]
    assert shared.read_text() == copied.read_text()  # fp32: the store changes the layout, not the samples
