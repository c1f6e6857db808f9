"""The IFEval-style training prompts (`alignkit.data.instruction_prompts`), `alignkit data instructions`, the shipped
file recipes/data/ifeval_train.jsonl and recipes/grpo_ifeval.yaml."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data.instruction_prompts import TYPES, build_instruction_prompts, compatible, to_jsonl
from alignkit.data.instruction_prompts import arguments as args
from alignkit.data.instruction_prompts.phrasings import PHRASINGS
from alignkit.data.instruction_prompts.tasks import BASE_TASKS, YES_NO_TASKS
from alignkit.errors import ConfigError
from alignkit.rewards.verifiers.ifeval import INSTRUCTIONS, ifeval_reward, judge_record, parse_instructions

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "recipes" / "data" / "ifeval_train.jsonl"
RECIPE = ROOT / "recipes" / "grpo_ifeval.yaml"
SHIPPED_COUNT, SHIPPED_SEED = 2000, 0


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    """A large draw (every type appears many times)."""
    return build_instruction_prompts(6000, 3)


def test_same_count_and_seed_give_the_same_records():
    assert build_instruction_prompts(300, 5) == build_instruction_prompts(300, 5)
    assert build_instruction_prompts(300, 5) != build_instruction_prompts(300, 6)
    assert build_instruction_prompts(500, 5)[:300] == build_instruction_prompts(300, 5)  # a prefix


def test_records_have_ifeval_columns_and_unique_keys(sample):
    assert all(set(r) == {"key", "prompt", "instruction_id_list", "kwargs"} for r in sample)
    assert len({r["key"] for r in sample}) == len(sample)
    assert all(1 <= len(r["instruction_id_list"]) <= 3 for r in sample)
    assert all(len(r["kwargs"]) == len(r["instruction_id_list"]) for r in sample)


def test_every_record_is_valid_for_the_verifier(sample):
    """Every kwargs object has exactly the arguments its type reads, and an answer is judged without error."""
    for record in sample:
        ids, kwargs = record["instruction_id_list"], record["kwargs"]
        parsed = parse_instructions(ids, kwargs)
        for (kind, parsed_args), given in zip(parsed, kwargs, strict=True):
            assert set(given) == set(kind.args) == set(parsed_args), (kind.id, given)
        assert len(judge_record("A dummy answer.", ids, kwargs).strict) == len(ids)
    rewards = ifeval_reward(
        completions=["A dummy answer."] * 50,
        instruction_id_list=[r["instruction_id_list"] for r in sample[:50]],
        kwargs=[r["kwargs"] for r in sample[:50]],
    )
    assert all(0.0 <= r <= 1.0 for r in rewards)


def test_the_catalogue_covers_every_type_the_verifier_supports(sample):
    assert set(TYPES) == set(INSTRUCTIONS) == set(args.SAMPLERS)
    counts = Counter(i for r in sample for i in r["instruction_id_list"])
    assert set(counts) == set(INSTRUCTIONS)
    assert counts["punctuation:no_comma"] > 3 * counts["language:response_language"]  # easy types common


def test_every_phrasing_key_has_several_variants():
    for instruction_id in TYPES:
        keys = [k for k in PHRASINGS if k.split("|")[0] == instruction_id]
        assert keys, instruction_id
        assert all(len(PHRASINGS[k]) >= 3 for k in keys), instruction_id


# Pairs no answer can satisfy (or that fight over the same part of it), spelled out apart from the rule.
CONTRADICTIONS = [
    ("change_case:english_lowercase", "change_case:english_capital"),
    ("change_case:english_lowercase", "detectable_format:constrained_response"),
    ("change_case:english_capital", "detectable_format:constrained_response"),
    ("change_case:english_lowercase", "detectable_format:multiple_sections"),
    ("change_case:english_lowercase", "change_case:capital_word_frequency"),
    ("detectable_format:json_format", "detectable_format:multiple_sections"),
    ("detectable_format:json_format", "length_constraints:number_paragraphs"),
    ("detectable_format:json_format", "combination:two_responses"),
    ("detectable_format:json_format", "startend:end_checker"),
    ("detectable_format:json_format", "startend:quotation"),
    ("detectable_format:json_format", "detectable_content:postscript"),
    ("detectable_format:json_format", "punctuation:no_comma"),
    ("detectable_format:json_format", "detectable_format:title"),
    ("language:response_language", "change_case:english_lowercase"),
    ("language:response_language", "keywords:existence"),
    ("language:response_language", "detectable_format:constrained_response"),
    ("length_constraints:number_paragraphs", "combination:two_responses"),
    ("length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word"),
    ("length_constraints:number_words", "length_constraints:number_sentences"),
    ("startend:quotation", "combination:repeat_prompt"),
    ("combination:repeat_prompt", "punctuation:no_comma"),
    ("combination:repeat_prompt", "keywords:forbidden_words"),
    ("detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections"),
]


def test_no_contradictory_combination_is_drawn(sample):
    for a, b in CONTRADICTIONS:
        assert not compatible(a, b) and not compatible(b, a), (a, b)
    for record in sample:
        ids = record["instruction_id_list"]
        assert len(set(ids)) == len(ids)
        for a, b in itertools.combinations(ids, 2):
            assert compatible(a, b), ids
            assert (a, b) not in CONTRADICTIONS and (b, a) not in CONTRADICTIONS, ids


def test_drawn_words_never_clash(sample):
    """A record never asks for a word it forbids, nor reuses a drawn word in two instructions."""
    for record in sample:
        drawn = []
        for kwargs in record["kwargs"]:
            drawn += kwargs.get("keywords", []) + kwargs.get("forbidden_words", [])
            drawn += [kwargs[k] for k in ("keyword", "first_word") if k in kwargs]
        assert len(drawn) == len(set(drawn)), record


def test_word_lists_keep_combinations_satisfiable():
    required = [
        *args.KEYWORDS,
        *args.FREQUENCY_WORDS,
        *args.FIRST_WORDS,
        *args.END_PHRASES,
        *args.TITLE_EXAMPLES,
        *args.SECTION_MARKERS,
        *args.POSTSCRIPT_MARKERS,
        *args.PLACEHOLDER_EXAMPLES,
        "My answer is yes. My answer is no. My answer is maybe.",
    ]
    for text in required:
        for word in args.FORBIDDEN_WORDS:
            assert not re.search(rf"\b{word}\b", text, flags=re.IGNORECASE), (word, text)
        assert "," not in text
        assert not set(text.lower()) & set(args.RARE_LETTERS), text
    # a repeated task keeps a "no commas" answer possible
    assert all("," not in task for task in BASE_TASKS + YES_NO_TASKS)


def test_tasks_are_many_and_distinct():
    assert len(BASE_TASKS) >= 300
    assert len(set(BASE_TASKS + YES_NO_TASKS)) == len(BASE_TASKS) + len(YES_NO_TASKS)
    assert all(task.endswith("?") for task in YES_NO_TASKS)


def test_constrained_response_and_repeat_prompt_use_the_task(sample):
    for record in sample:
        for instruction_id, kwargs in zip(record["instruction_id_list"], record["kwargs"], strict=True):
            if instruction_id == "detectable_format:constrained_response":
                assert record["prompt"].split("?")[0] + "?" in YES_NO_TASKS
            if instruction_id == "combination:repeat_prompt":
                assert record["prompt"].startswith(kwargs["prompt_to_repeat"])
                assert kwargs["prompt_to_repeat"] in BASE_TASKS + YES_NO_TASKS


def test_a_following_answer_passes():
    """Where the answer is easy to write, a phrasing's rule is the verifier's: repeat + lowercase + end phrase."""
    for record in build_instruction_prompts(3000, 11):
        ids = set(record["instruction_id_list"])
        if ids != {"combination:repeat_prompt", "change_case:english_lowercase"}:
            continue
        task = record["kwargs"][record["instruction_id_list"].index("combination:repeat_prompt")]
        answer = task["prompt_to_repeat"].lower() + " here is my answer."
        assert all(judge_record(answer, record["instruction_id_list"], record["kwargs"]).strict)
        return
    pytest.fail("no record with exactly repeat_prompt and english_lowercase in 3000")


@pytest.mark.parametrize(
    ("count", "seed", "message"),
    [(0, 0, "--count"), (-3, 0, "--count"), (True, 0, "--count"), (2.5, 0, "--count"), (5, -1, "--seed")],
)
def test_bad_count_or_seed_is_a_config_error(count, seed, message):
    with pytest.raises(ConfigError, match=message):
        build_instruction_prompts(count, seed)


def test_cli_writes_the_file(tmp_path, capsys):
    out = tmp_path / "sub" / "prompts.jsonl"
    assert main(["data", "instructions", "--output", str(out), "--count", "40", "--seed", "2"]) == 0
    assert out.read_text(encoding="utf-8") == to_jsonl(build_instruction_prompts(40, 2))
    assert "wrote 40 prompts" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--output FILE is required"),
        (["--output", "{tmp}/p.jsonl", "--count", "0"], "--count must be"),
        (["--output", "{tmp}/p.jsonl", "--seed", "-2"], "--seed must be"),
        (["--output", "{tmp}"], "is a folder"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["data", "instructions", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_help_has_an_example(capsys):
    assert main(["data", "instructions", "--help"]) == 0
    assert "Example" in capsys.readouterr().out


def test_shipped_file_is_the_generator_output():
    """recipes/data/ifeval_train.jsonl never drifts from `alignkit data instructions --count 2000 --seed 0`."""
    expected = to_jsonl(build_instruction_prompts(SHIPPED_COUNT, SHIPPED_SEED))
    assert SHIPPED.read_text(encoding="utf-8") == expected, (
        "regenerate it: alignkit data instructions --output recipes/data/ifeval_train.jsonl --count 2000 --seed 0"
    )


def test_shipped_file_loads_as_prompts_with_its_columns():
    from alignkit.data.load import load_records

    loaded = load_records(str(SHIPPED))
    assert len(loaded.records) == SHIPPED_COUNT
    first = loaded.records[0]
    assert first.kind == "prompt"
    assert {"instruction_id_list", "kwargs", "key"} <= set(first.meta)


def test_recipe_loads_into_grpo_config():
    from alignkit.config import build_config
    from alignkit.trainers.online.grpo_config import GRPOConfig

    cfg = build_config(GRPOConfig, RECIPE, {})
    assert cfg.reward_fn == ["ifeval"]
    assert cfg.prompts == "recipes/data/ifeval_train.jsonl"
    assert (ROOT / cfg.prompts).is_file()  # relative to the repository root, where the recipe is run from
    assert cfg.max_new_tokens >= 160 and cfg.loss_type == "dapo"
    assert json.loads(SHIPPED.read_text(encoding="utf-8").splitlines()[0])["instruction_id_list"]
