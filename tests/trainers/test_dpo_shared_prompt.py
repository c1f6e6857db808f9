"""DPO's shared-prompt forward: the same per-token outputs and gradients as TRL's fused forward, and the same run."""

from __future__ import annotations

import json

import pytest
import torch

import alignkit.trainers.dpo_shared_prompt as dpo_shared
from alignkit.cli import main
from alignkit.runs import read_metrics

from .test_dpo import dpo_args, write_pairs


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def pair_batch(pad_id: int) -> dict[str, torch.Tensor]:
    """Two pairs, TRL's layout: chosen rows then rejected rows, right-padded; completion_mask on answers."""
    prompts = [[5, 6, 7, 8], [9, 10]]
    chosen = [[11, 12, 13], [14]]
    rejected = [[15], [16, 17, 18, 19]]
    seqs = [p + c for p, c in zip(prompts, chosen, strict=True)] + [
        p + r for p, r in zip(prompts, rejected, strict=True)
    ]
    answers = [len(c) for c in chosen] + [len(r) for r in rejected]
    width = max(len(s) for s in seqs)
    ids = torch.full((4, width), pad_id)
    mask = torch.zeros((4, width), dtype=torch.long)
    completion = torch.zeros((4, width), dtype=torch.long)
    for r, (s, a) in enumerate(zip(seqs, answers, strict=True)):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
        completion[r, len(s) - a : len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "completion_mask": completion}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_forward_matches_trls_fused_forward(tiny_model_dir, attention):
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation=attention)
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    add_fused_lm_head(model, outputs=outputs)
    batch = pair_batch(model.config.pad_token_id)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    results = []
    for shared in (False, True):
        model.zero_grad()
        if shared:
            out = dpo_shared.shared_forward(
                model, **kwargs, labels=labels, pieces=dpo_shared._trl_pieces(), outputs=outputs
            )
        else:
            out = model(**kwargs, labels=labels, fused_lm_head=True, use_cache=False)
        (out.log_probs.sum() + out.loss).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (trl, trl_grads), (ours, our_grads) = results
    assert ours.log_probs.shape == trl.log_probs.shape == (4, batch["input_ids"].shape[1] - 1)
    assert (ours.log_probs != 0).sum() == (labels[:, 1:] != -100).sum()  # only answer tokens are scored
    for name in ("log_probs", "entropy", "mean_logits"):
        torch.testing.assert_close(getattr(ours, name), getattr(trl, name), rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.is_top1, trl.is_top1)
    torch.testing.assert_close(ours.loss, trl.loss, rtol=1e-5, atol=1e-6)
    assert our_grads.keys() == trl_grads.keys()
    for name, grad in trl_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_other_calls_fall_back_to_trls_forward(tiny_model_dir):
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    add_fused_lm_head(model)
    batch = pair_batch(model.config.pad_token_id)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    dpo_shared._wrap(model, dpo_shared._trl_pieces(), ("log_probs",))
    odd = model(
        input_ids=batch["input_ids"][:3],
        attention_mask=batch["attention_mask"][:3],
        labels=labels[:3],
        fused_lm_head=True,
    )  # an odd batch holds no pairs: TRL's path, every position scored
    assert odd.log_probs.shape == (3, batch["input_ids"].shape[1] - 1)
    left = batch["attention_mask"].flip(1)  # left padding: not TRL's layout, TRL's path
    assert not dpo_shared._right_padded(left) and dpo_shared._right_padded(batch["attention_mask"])
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])  # generation path
    assert plain.logits.shape[-1] == model.config.vocab_size


def test_dpo_run_with_a_shared_prompt_trains_like_without(tmp_path, tiny_model_dir, capsys, monkeypatch):
    data = write_pairs(tmp_path / "p.jsonl", n=8)
    calls = []
    original = dpo_shared.shared_forward
    monkeypatch.setattr(dpo_shared, "shared_forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    losses = {}
    for flag in ("--share-prompt", "--no-share-prompt"):
        assert main(dpo_args(tmp_path, tiny_model_dir, data, flag, name=flag)) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        rows = [r for r in read_metrics(tmp_path / flag / "metrics.jsonl") if "loss/total" in r]
        losses[flag] = ([r["loss/total"] for r in rows], report["eval_accuracy"])
        if flag == "--share-prompt":
            assert calls  # the policy and reference forwards went through the shared path
            calls.clear()
    assert not calls
    assert len(losses["--share-prompt"][0]) == 3
    assert losses["--share-prompt"][0] == pytest.approx(losses["--no-share-prompt"][0], rel=1e-4, abs=1e-5)
    assert losses["--share-prompt"][1] == pytest.approx(losses["--no-share-prompt"][1])
