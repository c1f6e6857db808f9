"""Best-of-n reranking: the KL bound, argmax / gate / min selection, scoring, and exports the loaders read.

Scores come from `FunctionScorer`s (rules on the text), so each expected choice can be worked out by hand.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.data.load import load_records
from alignkit.data.records import conversation
from alignkit.losses.kl import best_of_n_kl_bound as kl_bound
from alignkit.rewards.encoding import template_suffix_ids
from alignkit.rewards.ensemble import FunctionScorer, RewardMember, RewardSet
from alignkit.sampling.best_of_n import (
    best_index,
    preference_pair,
    score_generations,
    sft_example,
    worst_index,
)
from alignkit.sampling.results import Generation


def test_kl_bound_values():
    """log N - (N-1)/N: N=1 is the policy itself (0); N=4: log 4 - 3/4 = 1.386294 - 0.75 = 0.636294."""
    assert kl_bound(1) == 0.0
    assert kl_bound(4) == pytest.approx(math.log(4) - 0.75, abs=1e-12)
    assert kl_bound(4) == pytest.approx(0.636294, abs=1e-6)
    assert kl_bound(64) == pytest.approx(math.log(64) - 63 / 64, abs=1e-12)
    values = [kl_bound(n) for n in (1, 2, 4, 16, 64, 1024)]
    assert values == sorted(values) and len(set(values)) == len(values)  # grows with N
    with pytest.raises(ValueError):
        kl_bound(0)


def test_documented_kl_bounds_match_the_formula():
    """Guards issue 24.6: the docstring gave the n = 16 bound as 1.838 and the README as 1.84, but
    log 16 - 15/16 = 1.8351; every "VALUE at N" in the docstring and the README's bound must round right."""
    import re
    from pathlib import Path

    documented = re.findall(r"(\d+\.\d+) at (\d+)", kl_bound.__doc__ or "")
    assert len(documented) >= 3
    for value, n in documented:
        assert float(value) == round(kl_bound(int(n)), len(value.split(".")[1])), (value, n)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (value,) = re.findall(r"log 16 - 15/16 = (\d+\.\d+)", readme)
    assert value == f"{kl_bound(16):.3f}"


def test_best_is_argmax_and_ties_go_to_the_first():
    combined = torch.tensor([[0.1, 0.9, -1.0], [2.0, 2.0, 1.0], [-3.0, -2.0, -5.0]])
    assert best_index(combined).tolist() == [1, 0, 1]
    assert worst_index(combined).tolist() == [2, 2, 2]


def test_gate_failing_candidates_lose_to_every_passing_one():
    """Row 0: candidate 0 has the top score but fails the gate, so the best passing one (2) wins and the
    failing one is the worst. Row 1: all fail, so the highest (least unsafe) score wins. Row 2: all pass."""
    combined = torch.tensor([[5.0, 1.0, 2.0], [-0.5, -0.1, -0.9], [1.0, 3.0, 2.0]])
    passed = torch.tensor([[False, True, True], [False, False, False], [True, True, True]])
    assert best_index(combined, passed).tolist() == [2, 1, 1]
    assert worst_index(combined, passed).tolist() == [0, 2, 0]


def _generations(texts_per_prompt: list[list[str]], finished: bool = True) -> list[Generation]:
    out = []
    for p, texts in enumerate(texts_per_prompt):
        for j, text in enumerate(texts):
            out.append(Generation(p, j, [100 + p], [200 + j, 2] if finished else [200 + j], text, finished))
    return out


PROMPTS = [conversation(("user", "Say something.")), conversation(("user", "Another one."))]
TEXTS = [["bad but very long", "ok", "fine answer"], ["tiny", "bad", "medium one"]]


def length_scorer():
    return FunctionScorer(lambda prompts, responses: [float(len(r)) for r in responses])


def safety_scorer():
    return FunctionScorer(lambda prompts, responses: [-1.0 if "bad" in r else 1.0 for r in responses])


def test_score_generations_sum_and_argmax(tokenizer):
    rewards = RewardSet(
        [RewardMember("len", length_scorer(), 0.5), RewardMember("safe", safety_scorer(), 2.0)]
    )
    gens = _generations(TEXTS)
    scores = score_generations(rewards, tokenizer, PROMPTS, gens, batch_size=2)
    lengths = torch.tensor([float(len(t)) for texts in TEXTS for t in texts])
    safety = torch.tensor([-1.0 if "bad" in t else 1.0 for texts in TEXTS for t in texts])
    assert torch.allclose(scores.per_model["len"], lengths)  # raw, unweighted, in row order
    assert torch.allclose(scores.combined, 0.5 * lengths + 2.0 * safety)
    assert scores.passed is None
    combined, passed = scores.grid(3)
    # prompt 0: 0.5*17 - 2 = 6.5, 0.5*2 + 2 = 3, 0.5*11 + 2 = 7.5; prompt 1: 0.5*4 + 2 = 4, 0.5*3 - 2 = -0.5, 7
    assert best_index(combined, passed).tolist() == [2, 2]
    assert worst_index(combined, passed).tolist() == [1, 1]


def test_score_generations_min(tokenizer):
    """min of weighted scores: prompt 0 -> min(17, -1), min(2, 1), min(11, 1) = -1, 1, 1 -> first of the tie."""
    rewards = RewardSet([RewardMember("len", length_scorer()), RewardMember("safe", safety_scorer())], "min")
    scores = score_generations(rewards, tokenizer, PROMPTS, _generations(TEXTS))
    assert scores.combined.view(2, 3)[0].tolist() == [-1.0, 1.0, 1.0]
    assert best_index(*scores.grid(3)).tolist() == [1, 0]


def test_weight_zero_scores_without_ranking(tokenizer):
    """A held-out check model with weight 0 is scored and reported but does not move the choice."""
    rewards = RewardSet([RewardMember("len", length_scorer()), RewardMember("check", safety_scorer(), 0.0)])
    scores = score_generations(rewards, tokenizer, PROMPTS, _generations(TEXTS))
    assert scores.per_model["check"].tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]
    assert best_index(*scores.grid(3)).tolist() == [0, 2]  # the longest text, "bad" or not


def test_score_generations_gate(tokenizer):
    """Gate safe:0.0 -- failing candidates score their safety score (-1) and lose; the others their length."""
    rewards = RewardSet(
        [RewardMember("len", length_scorer()), RewardMember("safe", safety_scorer())], "gate", ("safe", 0.0)
    )
    scores = score_generations(rewards, tokenizer, PROMPTS, _generations(TEXTS))
    assert scores.passed.tolist() == [False, True, True, True, False, True]
    assert scores.combined.tolist() == [-1.0, 2.0, 11.0, 4.0, -1.0, 10.0]
    combined, passed = scores.grid(3)
    assert best_index(combined, passed).tolist() == [2, 2]
    assert worst_index(combined, passed).tolist() == [0, 1]


def test_same_tokenizer_members_get_the_sampled_ids_with_the_template_suffix(tokenizer):
    """A member on the policy's tokenizer scores prompt ids + response ids (+ the chat template's suffix
    after EOS for finished answers; nothing for answers cut at max_new_tokens)."""
    from alignkit.rewards.encoding import template_suffix_ids

    seen = []

    class Recorder:
        def __init__(self, tok):
            self.tokenizer = tok

        def score_ids(self, input_ids, attention_mask):
            seen.extend(
                ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)
            )
            return attention_mask.sum(-1).float()

    rewards = RewardSet([RewardMember("rec", Recorder(tokenizer))])
    suffix = template_suffix_ids(tokenizer)
    finished = _generations([["a"]], finished=True)
    cut = _generations([["b"]], finished=False)
    score_generations(rewards, tokenizer, PROMPTS[:1], finished)
    score_generations(rewards, tokenizer, PROMPTS[:1], cut)
    assert seen == [[100, 200, 2, *suffix], [100, 200]]
    assert rewards.retokenised == {}


def test_exports_load_as_preference_and_sft(tmp_path):
    gens = _generations([["best answer", "worst answer"]])
    pair = preference_pair(PROMPTS[0], gens[0], gens[1])
    assert preference_pair(PROMPTS[0], gens[0], gens[0]) is None  # same text: no preference signal
    pairs, sft = tmp_path / "pairs.jsonl", tmp_path / "sft.jsonl"
    pairs.write_text(json.dumps(pair.to_dict()) + "\n")
    sft.write_text(json.dumps(sft_example(PROMPTS[0], gens[0]).to_dict()) + "\n")
    (loaded_pair,) = load_records(pairs).records
    assert loaded_pair.kind == "preference"
    assert (
        loaded_pair.chosen[0].content == "best answer" and loaded_pair.rejected[0].content == "worst answer"
    )
    assert loaded_pair.prompt == PROMPTS[0]
    (loaded_sft,) = load_records(sft, kind="sft").records
    assert loaded_sft.completion[0].content == "best answer"


def test_candidates_of_a_prompt_are_scored_as_one_group(tmp_path, tiny_model_dir, one_thread):
    """A reward model that shares prompts gets each prompt's candidates as one group (its prompt forwarded
    once); the scores equal one forward pass per candidate, and a text-only member is unaffected."""
    from alignkit.rewards.ensemble import ModelScorer
    from alignkit.rewards.model import load_reward_model
    from factories import make_reward_model

    model = load_reward_model(make_reward_model(tmp_path / "rm", tiny_model_dir), dtype="fp32")
    tok = model.tokenizer
    texts = [["Four.", "It is four, of course.", "5", "2 + 2 = 4"], ["Hello there!", "hi"]]
    prompts = [conversation(("user", "What is 2 plus 2?")), conversation(("user", "Greet me " * 6))]
    gens = []
    for p, (prompt, answers) in enumerate(zip(prompts, texts, strict=True)):
        rendered = tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in prompt],
            add_generation_prompt=True,
            tokenize=False,
        )
        prompt_ids = tok(rendered, add_special_tokens=False)["input_ids"]
        for j, text in enumerate(answers):
            response = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            gens.append(Generation(p, j, list(prompt_ids), response, text, True))
    calls = []
    original = model.score_groups
    model.score_groups = lambda groups, batch_size: (
        calls.append([len(g) for g in groups]) or original(groups, batch_size)
    )
    rewards = RewardSet([RewardMember("rm", ModelScorer(model)), RewardMember("len", length_scorer())])
    scores = score_generations(rewards, tok, prompts, gens, batch_size=16)
    assert len(calls) == 1 and sorted(calls[0]) == [2, 4]  # both prompts in one call, one group each
    rows = [g.prompt_ids + g.response_ids + template_suffix_ids(tok) for g in gens]
    alone = model.score_sequences(rows, batch_size=1)
    torch.testing.assert_close(scores.per_model["rm"], alone, rtol=1e-5, atol=1e-5)
    assert scores.per_model["len"].tolist() == [float(len(t)) for answers in texts for t in answers]
