"""Shared-prompt packing: a comparison's prompt forwarded once, its answers scored as if each were alone."""

from __future__ import annotations

import pytest
import torch

from alignkit.data.records import Message
from alignkit.rewards.comparisons import Comparison, collate, pack_shared, prepare_comparisons
from alignkit.rewards.model import load_reward_model
from factories import make_reward_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def reward_model(tmp_path, tiny_model_dir):
    return load_reward_model(make_reward_model(tmp_path / "rm", tiny_model_dir), dtype="fp32")


def records():
    from alignkit.data.records import Record

    long_prompt = (
        Message("user", "Tell me a story " * 12),
        Message("assistant", "Once."),
        Message("user", "More"),
    )
    return [
        Record(prompt="What is 2 plus 2?", chosen="4.", rejected="Five, I think, or maybe six."),
        Record(
            prompt="Rank these numbers.",
            responses=("three", "one two three four", "two", "one"),
            ranks=(0, 2, 1, 2),
        ),
        Record(prompt="Say hi.", chosen="hi", rejected="hi"),  # identical answers still score alone
        Record(prompt=long_prompt, chosen="a short one", rejected="a much longer answer " * 4),
    ]


def test_pack_layout_puts_the_prompt_once_and_each_answer_at_its_own_positions():
    pair = Comparison(sequences=[[5, 6, 7, 8], [5, 6, 9]], ranks=(0, 1), answer_tokens=[2, 1])
    assert pair.shared_prefix == 2 and pair.packed_length == 5
    input_ids, attention_mask, layout = pack_shared([pair], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert layout.segments.tolist() == [[0, 0, 1, 1, 2]]
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 2]]
    assert (layout.rows.tolist(), layout.last.tolist()) == ([0, 0], [3, 4])
    assert layout.columns(torch.tensor([4, 3]), 4).tolist() == [[0, 1, 2, 3], [0, 1, 4, 4]]
    visible = layout.attention_mask()[0, 0]
    assert visible[4].tolist() == [True, True, False, False, True]  # answer 2 sees the prompt and itself
    assert visible[3].tolist() == [True, True, True, True, False]  # answer 1 never sees answer 2
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1]]


def test_identical_sequences_keep_one_token_of_their_own():
    same = Comparison(sequences=[[1, 2, 3], [1, 2, 3]], ranks=(0, 1), answer_tokens=[1, 1])
    assert same.shared_prefix == 2  # each answer still ends on a token of its own row segment
    _, _, layout = pack_shared([same], pad_id=0)
    assert layout.last.tolist() == [2, 3]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_scores_equal_one_pass_per_answer(reward_model, attention):
    reward_model.model.config._attn_implementation = attention
    data = prepare_comparisons(records(), reward_model.tokenizer, max_length=48)
    assert data.truncated_prompts > 0  # the long prompt was cut differently for each answer
    assert sum(c.shared_prefix for c in data.comparisons) > 0
    assert reward_model.shares_prompt
    packed = reward_model.score_comparisons(data.comparisons, batch_size=5)  # rows of several comparisons
    flat = reward_model.score_sequences([s for c in data.comparisons for s in c.sequences], batch_size=3)
    torch.testing.assert_close(torch.cat(packed), flat, rtol=1e-5, atol=1e-5)
    # the identical answers of "Say hi." score the same
    assert packed[2][0].item() == pytest.approx(packed[2][1].item(), abs=1e-5)


def test_packed_training_batch_gives_the_same_scores_and_gradients(reward_model):
    data = prepare_comparisons(records(), reward_model.tokenizer, max_length=48).comparisons
    grads = []
    for share in (False, True):
        batch = collate(data, reward_model.pad_id, share_prompt=share)
        reward_model.zero_grad()
        for p in reward_model.head.parameters():
            p.requires_grad_(True)
        scores = reward_model(batch.input_ids, batch.attention_mask, batch.shared)
        (scores[batch.better_idx] - scores[batch.worse_idx]).sum().backward()
        grads.append((scores.detach(), reward_model.head.score.weight.grad.clone()))
        assert batch.real_tokens == sum(c.tokens for c in data)
        if share:
            assert batch.input_ids.shape[0] == len(data)  # one row per comparison
            assert batch.computed_tokens < batch.real_tokens
        else:
            assert batch.computed_tokens == batch.real_tokens
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)


def test_a_sequence_classifier_does_not_share_prompts(reward_model, tmp_path):
    from alignkit.rewards.model import export_reward_model

    exported = load_reward_model(export_reward_model(tmp_path / "rm", tmp_path / "plain"), dtype="fp32")
    assert not exported.shares_prompt
    data = prepare_comparisons(records(), exported.tokenizer, max_length=48).comparisons
    # it scores the same comparisons one answer at a time, equal to the adapter model's packed scores
    ours = torch.cat(reward_model.score_comparisons(data))
    theirs = torch.cat(exported.score_comparisons(data))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_every_step_of_a_run_packs_or_not_as_asked(tmp_path, tiny_model_dir, capsys):
    import sys
    from pathlib import Path

    from alignkit.cli import main
    from alignkit.runs import read_metrics

    sys.path.insert(0, str(Path(__file__).parent))
    from test_rm import RECIPE, write_pairs  # noqa: E402

    data = write_pairs(tmp_path / "p.jsonl", n=8)
    for flag in ("--share-prompt", "--no-share-prompt"):
        out = tmp_path / flag
        args = ["rm", "-c", str(RECIPE), "-m", str(tiny_model_dir), "--data", str(data), "-o", str(out), flag]
        assert main([*args, "--max-steps", "4", "--json", "--quiet"]) == 0
        rows = [r for r in read_metrics(out / "metrics.jsonl") if "perf/tokens_per_s" in r]
        assert len(rows) == 4
        for r in rows:
            if flag == "--share-prompt":
                assert r["perf/forward_tokens_per_s"] < r["perf/tokens_per_s"]
            else:
                assert r["perf/forward_tokens_per_s"] == pytest.approx(r["perf/tokens_per_s"])


def _groups(tokenizer):
    """Best-of-n style groups: one prompt, several answers each; one group of a single answer."""
    prompts = ["What is 2 plus 2?", "Tell me a story about a lighthouse keeper " * 3, "Say hi."]
    answers = [
        ["4.", "Four.", "It is 4, of course.", "5", "four", "Maybe 4?", "2 + 2 = 4"],
        ["Once upon a time.", "The keeper slept.", "No."],
        ["hi"],
    ]
    groups = []
    for prompt, texts in zip(prompts, answers, strict=True):
        rendered = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": t}], tokenize=False
            )
            for t in texts
        ]
        groups.append([tokenizer(r, add_special_tokens=False)["input_ids"] for r in rendered])
    return groups


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("limit", [None, 40])
def test_score_groups_equals_one_pass_per_answer(tmp_path, tiny_model_dir, monkeypatch, limit, device):
    """Groups bigger than the batch, or than PACK_TOKENS packed, are split over rows; scores are unchanged."""
    import alignkit.rewards.model as module

    if limit is not None:
        monkeypatch.setattr(module, "PACK_TOKENS", limit)
    path = make_reward_model(tmp_path / "rm", tiny_model_dir)
    reward_model = load_reward_model(path, dtype="fp32", device=device)
    groups = _groups(reward_model.tokenizer)
    assert reward_model.shares_prompt
    grouped = reward_model.score_groups(groups, batch_size=3)  # 7 answers: split into packs of <= 3
    flat = reward_model.score_sequences([s for g in groups for s in g], batch_size=4)
    assert [len(s) for s in grouped] == [len(g) for g in groups]
    tol = 1e-5 if device == "cpu" else 1e-4  # CUDA's masked and causal attention kernels sum in other orders
    torch.testing.assert_close(torch.cat(grouped).cpu(), flat.cpu(), rtol=tol, atol=tol)


def test_split_groups_cuts_into_the_fewest_even_packs(monkeypatch):
    import alignkit.rewards.model as module

    prompt = list(range(100, 120))  # 20 shared tokens
    group = [prompt + [k] * n for k, n in enumerate((3, 5, 2, 4, 6))]  # answers differ from their first token
    assert module._split_groups([group], most_answers=10) == [((0, 0, 5), 20 + 3 + 5 + 2 + 4 + 6)]
    packs = module._split_groups([group], most_answers=2)  # ceil(5 / 2) = 3 packs of 2, 1, 2 answers
    assert [span for span, _ in packs] == [(0, 0, 2), (0, 2, 3), (0, 3, 5)]
    assert [length for _, length in packs] == [20 + 3 + 5, 20 + 2, 20 + 4 + 6]  # a lone answer: its length
    monkeypatch.setattr(module, "PACK_TOKENS", 30)  # 40 tokens packed: 2 packs
    packs = module._split_groups([group], most_answers=10)
    assert [span for span, _ in packs] == [(0, 0, 2), (0, 2, 5)]
    assert [length for _, length in packs] == [28, 32]  # even in answers, so about (not at most) the limit
    monkeypatch.setattr(module, "PACK_TOKENS", 5)  # answers longer than the limit: one row each
    assert [span for span, _ in module._split_groups([group], most_answers=10)] == [
        (0, i, i + 1) for i in range(5)
    ]
    assert module._split_groups([[[7]], []], most_answers=1) == [((0, 0, 1), 1)]  # an empty group: no pack
