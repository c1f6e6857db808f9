"""`alignkit sft` on TRL's SFTTrainer: the loss covers the answer tokens only; training and report.

Training tests run the session's tiny Llama for a few steps in fp32 with recipes/sft_tiny.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from alignkit.cli import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "sft_tiny.yaml"


def write_sft(path: Path, n: int = 8) -> Path:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "completion": [{"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_args(tmp_path: Path, model_dir: Path, data: Path, *extra: str) -> list[str]:
    return [
        "sft",
        "--config",
        str(RECIPE),
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(tmp_path / "run"),
        "--json",
        "--quiet",
        *extra,
    ]


class Spy:
    def __init__(self, monkeypatch):
        import trl

        self.seen: list = []
        seen = self.seen
        original = trl.SFTTrainer

        class SpyTrainer(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                seen.append((self, {n: p.detach().clone() for n, p in self.model.named_parameters()}))

        monkeypatch.setattr(trl, "SFTTrainer", SpyTrainer)


def test_prompt_tokens_are_masked_and_the_answer_with_its_end_of_turn_is_trained(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    spy = Spy(monkeypatch)
    data = write_sft(tmp_path / "s.jsonl", n=4)
    assert main(sft_args(tmp_path, tiny_model_dir, data, "--max-steps", "1")) == 0, capsys.readouterr().err
    trainer, _ = spy.seen[-1]
    batch = next(iter(trainer.get_train_dataloader()))
    tok = trainer.processing_class
    answers = {f"{i} plus {i} is {2 * i}." for i in range(4)}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        real = mask.bool()
        trained = labels[real] != -100
        assert trained.any() and not trained.all()
        first = int(trained.nonzero()[0])
        assert not trained[:first].any() and trained[first:].all()  # prompt masked, answer kept, contiguous
        assert torch.equal(labels[real][trained], ids[real][trained])
        answer = tok.decode(ids[real][first:])
        assert answer.strip().removesuffix("<|im_end|>").strip() in answers  # the answer and its end of turn
        prompt = tok.decode(ids[real][:first])
        assert prompt.endswith("<|im_start|>assistant\n") and "plus" in prompt


def test_sft_trains_lora_only_and_reports_eval_loss(tmp_path, tiny_model_dir, monkeypatch, capsys):
    spy = Spy(monkeypatch)
    data = write_sft(tmp_path / "s.jsonl", n=8)
    rc = main(sft_args(tmp_path, tiny_model_dir, data, "--eval-split", "0.25"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    for key in ("steps", "train_seconds", "eval_loss", "eval_examples"):
        assert report[key] is not None, key
    assert report["eval_examples"] == 2 and report["eval_perplexity"] > 1
    trainer, start = spy.seen[-1]
    lora = {n for n, _ in trainer.model.named_parameters() if "lora_" in n}
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), start[n])}
    assert lora and moved == lora
    meta = json.loads((tmp_path / "run" / "alignkit_model.json").read_text())
    assert meta["trainer"] == "sft" and meta["kind"] == "policy"


def test_preference_data_trains_on_the_chosen_answers(tmp_path, tiny_model_dir, monkeypatch, capsys):
    spy = Spy(monkeypatch)
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Q{i}"}],
            "chosen": [{"role": "assistant", "content": f"good {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad {i}"}],
        }
        for i in range(4)
    ]
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(sft_args(tmp_path, tiny_model_dir, data, "--max-steps", "1")) == 0, capsys.readouterr().err
    trainer, _ = spy.seen[-1]
    texts = [trainer.processing_class.decode(r["input_ids"]) for r in trainer.train_dataset]
    assert all("good" in t and "bad" not in t for t in texts) and len(texts) == 4
