"""Scalar heads: last-token indexing, init, save/load, export as an HF sequence classifier."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.errors import ModelError
from alignkit.models import heads, lora


def test_last_token_index_right_padding():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert heads.last_token_index(mask).tolist() == [2, 0, 3]


def test_last_token_index_left_padding():
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert heads.last_token_index(mask).tolist() == [3, 3, 3]


def test_scalar_head_shapes_key_and_dtype():
    head = heads.ScalarHead(8)
    assert list(head.state_dict()) == ["score.weight"]
    assert head.score.weight.shape == (1, 8)
    hidden = torch.randn(3, 5, 8, dtype=torch.bfloat16)
    out = head(hidden)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out, hidden.float() @ head.score.weight[0])


def test_head_inits():
    """Reward head ~ N(0, 1/sqrt(H+1)) (Ziegler et al. 2019); value head starts at zero."""
    torch.manual_seed(0)
    hidden_size = 4095  # std = 1/64
    reward = heads.ScalarHead(hidden_size, init="reward")
    std = reward.score.weight.std().item()
    assert abs(std - 1 / math.sqrt(hidden_size + 1)) < 0.05 / 64
    assert abs(reward.score.weight.mean().item()) < 5 / 64 / math.sqrt(hidden_size)
    value = heads.ScalarHead(hidden_size, init="value")
    assert torch.count_nonzero(value.score.weight) == 0
    with pytest.raises(ValueError, match="init"):
        heads.ScalarHead(4, init="xavier")


def test_score_last_token_picks_the_last_real_token():
    torch.manual_seed(0)
    head = heads.ScalarHead(4)
    hidden = torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    per_token = head(hidden)
    scores = heads.score_last_token(hidden, mask, head)
    assert scores.shape == (2,)
    torch.testing.assert_close(scores, torch.stack([per_token[0, 1], per_token[1, 2]]))


def test_save_and_load_head(tmp_path):
    head = heads.ScalarHead(16, meta={"source": "test"})
    path = heads.save_head(head, tmp_path, "reward", meta={"mean": 0.5, "std": 2.0})
    assert path.name == "reward_head.safetensors" and (tmp_path / "reward_head.json").is_file()
    loaded = heads.load_head(tmp_path, "reward", hidden_size=16)
    torch.testing.assert_close(loaded.score.weight, head.score.weight, rtol=0, atol=0)
    assert loaded.meta == {"source": "test", "mean": 0.5, "std": 2.0}
    assert loaded.score.weight.dtype == torch.float32
    with pytest.raises(ModelError, match="hidden size 16"):
        heads.load_head(tmp_path, "reward", hidden_size=32)
    with pytest.raises(ModelError, match="no 'value' head"):
        heads.load_head(tmp_path, "value")


def _our_scores(model, head, batch):
    with torch.no_grad():
        hidden = lora.backbone(model)(**batch).last_hidden_state
        return heads.score_last_token(hidden, batch["attention_mask"], head)


@pytest.mark.parametrize("side", ["right", "left"])
def test_export_sequence_classifier_gives_the_same_scores(tiny_model, tokenizer, tmp_path, side):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = lora.add_adapter(tiny_model, "reward", lora.LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for param in lora.adapter_parameters(model, "reward"):
            param.normal_(std=0.3)
    head = heads.ScalarHead(model.config.hidden_size, meta={"mean": 0.1})
    with torch.no_grad():
        head.score.weight.normal_()  # larger than the init, so a wrong token would show
    tokenizer.padding_side = side
    batch = tokenizer(
        ["a long chosen answer, with detail", "short", "mid length"], padding=True, return_tensors="pt"
    )
    assert (batch["attention_mask"] == 0).any()
    ours = _our_scores(model, head, batch)

    out = heads.export_sequence_classifier(model, head, tokenizer, tmp_path / "rm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]  # no temp dirs left
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    exported = AutoModelForSequenceClassification.from_pretrained(str(out), use_safetensors=True)
    assert exported.config.num_labels == 1 and exported.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        theirs = exported(**batch).logits[:, 0]
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
    # without the adapter the scores differ, so the export really carries the merged LoRA
    with lora.reference(model):
        assert not torch.allclose(_our_scores(model, head, batch), ours, atol=1e-3)

    with pytest.raises(ModelError, match="already exists"):
        heads.export_sequence_classifier(model, head, tokenizer, out)
    heads.export_sequence_classifier(model, head, tokenizer, out, overwrite=True)


def test_export_from_a_plain_model(tiny_model, tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification

    head = heads.ScalarHead(tiny_model.config.hidden_size)
    batch = tokenizer(["one", "two three four"], padding=True, return_tensors="pt")
    out = heads.export_sequence_classifier(tiny_model, head, tokenizer, tmp_path / "rm")
    exported = AutoModelForSequenceClassification.from_pretrained(str(out))
    with torch.no_grad():
        theirs = exported(**batch).logits[:, 0]
    torch.testing.assert_close(theirs, _our_scores(tiny_model, head, batch), rtol=1e-4, atol=1e-5)
