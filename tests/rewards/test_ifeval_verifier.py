"""The ``ifeval`` verifier: every instruction type followed, not followed and followed only loosely; the
text measures; the reward function and its errors.

The hand-made cases live in tests/data/fixtures/ifeval_cases.jsonl; benchmarks/ifeval_agreement.py judges
the same file with the reference checker (lm-eval 0.4.13), which agrees with every verdict there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.data.load import load_records
from alignkit.errors import ConfigError
from alignkit.rewards.functions import record_columns
from alignkit.rewards.verifiers import resolve_reward_fn
from alignkit.rewards.verifiers.ifeval import (
    INSTRUCTIONS,
    accuracies,
    ifeval_reward,
    judge_record,
    loose_variants,
)
from alignkit.rewards.verifiers.ifeval.text import (
    count_sentences,
    count_words,
    detect_language,
    split_sentences,
    word_tokens,
)

CASES_FILE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "ifeval_cases.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['instruction_id']}-{i}" for i, c in enumerate(CASES)])
def test_hand_made_case(case):
    verdict = judge_record(case["response"], [case["instruction_id"]], [case["kwargs"]])
    assert (verdict.strict[0], verdict.loose[0]) == (case["strict"], case["loose"]), case["note"]


def test_the_cases_cover_every_type_both_ways_and_loose_only():
    assert set(INSTRUCTIONS) == {c["instruction_id"] for c in CASES}
    assert len(INSTRUCTIONS) == 25
    for name in INSTRUCTIONS:
        verdicts = {(c["strict"], c["loose"]) for c in CASES if c["instruction_id"] == name}
        assert (True, True) in verdicts and (False, False) in verdicts, name
    assert sum(1 for c in CASES if not c["strict"] and c["loose"]) >= 8


def test_letter_frequency_counts_a_character_that_is_no_letter():
    ids, kw = ["keywords:letter_frequency"], [{"letter": "!", "let_frequency": 3, "let_relation": "at least"}]
    assert judge_record("Wow! Yes! Go!", ids, kw).strict == (True,)
    assert judge_record("Wow! Yes.", ids, kw).strict == (False,)


def test_loose_variants_are_the_references_eight():
    variants = loose_variants("first *line*\nmiddle\nlast")
    assert variants == [
        "first *line*\nmiddle\nlast",
        "first line\nmiddle\nlast",
        "middle\nlast",
        "first *line*\nmiddle",
        "middle",
        "middle\nlast",
        "first line\nmiddle",
        "middle",
    ]


# ------------------------------------------------------------------------------------------ text measures


def test_sentences_split_at_terminators_but_not_abbreviations_or_decimals():
    text = 'Mr. Smith paid 3.5 dollars. "Really?" she asked! Yes... e.g. this one.\nA heading\nNext line.'
    assert split_sentences(text) == [
        "Mr. Smith paid 3.5 dollars.",
        '"Really?"',
        "she asked!",
        "Yes...",
        "e.g. this one.",
        "A heading\nNext line.",
    ]
    assert count_sentences("1. First item\n2. Second item") == 3  # "1." ends a sentence
    assert count_sentences("no full stop at all") == 1
    assert count_sentences("  ...  ") == 0


def test_words_and_word_tokens():
    assert count_words("Don't stop: it's 3.5 km!") == 8  # Don t stop it s 3 5 km
    tokens = word_tokens("I DON'T know, BUT the U.S. is WELL-KNOWN; CANNOT stop:NOW")
    assert tokens == [
        "I", "DO", "N'T", "know", "BUT", "the", "U.S.", "is", "WELL-KNOWN", "CAN", "NOT", "stop", "NOW",
    ]  # fmt: skip


def test_language_detection_is_deterministic():
    text = "Das ist ein kurzer Satz, aber vielleicht auch ein bisschen English text here."
    assert len({detect_language(text) for _ in range(5)}) == 1
    assert detect_language("Der Hund spielt im Garten, während die Kinder in der Schule lernen.") == "de"
    assert detect_language("1234 !!") is None


# ------------------------------------------------------------------------------------------ reward and accuracies


def test_reward_is_the_strict_fraction_and_none_without_instructions():
    ids = [["punctuation:no_comma", "keywords:existence"], ["punctuation:no_comma"], None, []]
    kwargs = [[{}, {"keywords": ["world"]}], [{}], None, []]
    completions = ["hello world, yes", "no commas", "anything", "anything"]
    assert ifeval_reward(["p"] * 4, completions, ids, kwargs) == [0.5, 1.0, None, None]


def test_null_kwargs_are_dropped_and_json_text_columns_are_read():
    hf_style = {"num_highlights": None, "keywords": None, "relation": "at least", "num_words": 3}
    reward = ifeval_reward(
        completions=["one two three"],
        instruction_id_list=[["length_constraints:number_words"]],
        kwargs=[[hf_style]],
    )
    assert reward == [1.0]
    csv_style = ifeval_reward(
        completions=["a, b"], instruction_id_list=['["punctuation:no_comma"]'], kwargs=["[{}]"]
    )
    assert csv_style == [0.0]


def test_conversational_completions_are_judged_by_their_content():
    messages = [{"role": "assistant", "content": "No commas"}]
    assert ifeval_reward(
        completions=[messages], instruction_id_list=[["punctuation:no_comma"]], kwargs=[[{}]]
    ) == [1.0]


@pytest.mark.parametrize(
    "ids, kwargs, message",
    [
        (["punctuation:no_coma"], [{}], "unknown instruction 'punctuation:no_coma'"),
        (["length_constraints:number_words"], [{"num_words": 5}], "needs the argument 'relation'"),
        (["punctuation:no_comma"], [{"num_words": 5}], "does not take num_words"),
        (["length_constraints:number_words"], [{"num_words": 5, "relation": "at most"}], "relation must be"),
        (
            ["length_constraints:number_words"],
            [{"num_words": "many", "relation": "at least"}],
            "whole number",
        ),
        (
            ["keywords:letter_frequency"],
            [{"letter": "ab", "let_frequency": 1, "let_relation": "at least"}],
            "one character",
        ),
        (["punctuation:no_comma", "startend:quotation"], [{}], "2 instructions but 1 kwargs"),
    ],
)
def test_bad_records_are_config_errors(ids, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ifeval_reward(completions=["x"], instruction_id_list=[ids], kwargs=[kwargs])


def test_built_in_reward_reads_columns_from_loaded_records(tmp_path):
    path = tmp_path / "ifeval.jsonl"
    rows = [
        {
            "key": 1,
            "prompt": "Write without commas.",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
        },
        {
            "key": 2,
            "prompt": "Wrap it in quotes.",
            "instruction_id_list": ["startend:quotation"],
            "kwargs": [{}],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_records(path, kind="prompt").records
    fn = resolve_reward_fn("ifeval")
    rewards = fn(["p1", "p1", "p2", "p2"], ["a, b", "a b", '"x"', "x"], **record_columns(records, 2))
    assert rewards == [0.0, 1.0, 1.0, 0.0]


def test_accuracies_prompt_and_instruction_level():
    a = judge_record("a, b", ["punctuation:no_comma", "startend:quotation"], [{}, {}])  # 0 of 2
    b = judge_record('"a b"', ["punctuation:no_comma", "startend:quotation"], [{}, {}])  # 2 of 2
    c = judge_record('Sure\n"a b"', ["startend:quotation"], [{}])  # loose only
    result = accuracies([a, b, c])
    assert (result["prompts"], result["instructions"]) == (3, 5)
    assert result["prompt_strict"] == pytest.approx(1 / 3)
    assert result["inst_strict"] == pytest.approx(2 / 5)
    assert result["prompt_loose"] == pytest.approx(2 / 3)
    assert result["inst_loose"] == pytest.approx(3 / 5)
    assert result["by_type"]["startend:quotation"] == {"instructions": 3, "strict": 1 / 3, "loose": 2 / 3}
