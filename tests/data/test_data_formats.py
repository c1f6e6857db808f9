"""Every source format, parsed from a small fixture file written for these tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.data.formats import FORMATS, detect_format, format_names, get_format
from alignkit.data.formats.paired import parse_hh_dialogue
from alignkit.data.load import load_records
from alignkit.data.records import Message, conversation
from alignkit.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str, **kwargs):
    return load_records(FIXTURES / name, **kwargs)


def user(text: str) -> Message:
    return Message("user", text)


def assistant(text: str) -> Message:
    return Message("assistant", text)


# ------------------------------------------------------------------ HH-RLHF
def test_hh_dialogue_turns_strip_one_space_only():
    conv = parse_hh_dialogue("\n\nHuman:  two spaces\n\nAssistant: done ", "chosen", "f:1")
    assert conv == (user(" two spaces"), assistant("done "))


def test_hh_dialogue_without_markers_is_an_error_naming_the_field():
    with pytest.raises(DataError, match="f:3: field 'rejected' has no"):
        parse_hh_dialogue("just text", "rejected", "f:3")


def test_hh_rlhf_prompt_is_the_shared_turns():
    result = load("hh.jsonl")
    assert (result.format, result.kind, len(result.records)) == ("hh-rlhf", "preference", 4)
    first = result.records[0]
    assert first.prompt == (user("How do I bake bread?"),)
    assert first.chosen == (assistant("Mix flour, water, salt and yeast, then bake."),)
    assert first.rejected == (assistant("Buy it."),)
    assert first.source == f"{FIXTURES / 'hh.jsonl'}:1"


def test_hh_rlhf_empty_final_answer_loads():
    rec = load("hh.jsonl").records[1]
    assert rec.chosen == (assistant(""),)
    assert rec.rejected == (assistant("Sure, first get a tension wrench."),)


def test_hh_rlhf_dialogues_that_part_early_give_multi_turn_answers():
    third, fourth = load("hh.jsonl").records[2:4]
    # They part at the second user turn: the prompt ends with the last shared user turn.
    assert third.prompt == (user("Hi"),)
    assert third.chosen == conversation(
        ("assistant", "Hello! How can I help?"), ("user", "Name a color."), ("assistant", "Blue.")
    )
    assert third.rejected[1] == user("Name a colour.")
    # Different lengths: one answer has three turns, the other one.
    assert fourth.prompt == (user("What is 2+2?"),)
    assert fourth.chosen == conversation(("assistant", "4"), ("user", "And 3+3?"), ("assistant", "6"))
    assert fourth.rejected == (assistant("5, I think."),)


# ------------------------------------------------------------------------ TRL
def test_trl_preference_standard_with_margin():
    result = load("trl_preference.jsonl")
    assert (result.format, result.kind) == ("trl-preference", "preference")
    first, second = result.records
    assert first.prompt == (user("The sky is"),) and first.chosen == (assistant(" blue."),)
    assert first.margin is None and second.margin == 2.0


def test_trl_preference_conversational_and_implicit_prompt():
    explicit, implicit, beside = load("trl_preference_conversational.jsonl").records
    assert explicit.prompt == (Message("system", "Be brief."), user("What color is the sky?"))
    assert explicit.chosen == (assistant("Blue."),)
    assert implicit.prompt == (user("Capital of France?"),)
    assert (implicit.chosen, implicit.rejected) == ((assistant("Paris."),), (assistant("Lyon."),))
    # A prompt beside whole conversations: the answers lose the repeated prompt.
    assert beside.prompt == (user("Say hi."),) and beside.chosen == (assistant("Hi!"),)
    assert beside.meta == {"score_chosen": 9.0, "score_rejected": 2.0}


def test_trl_unpaired_text_and_conversational():
    result = load("trl_unpaired.jsonl")
    assert (result.format, result.kind) == ("trl-unpaired", "unpaired")
    assert [r.label for r in result.records] == [True, False, True]
    assert result.records[2].completion == (assistant("4"),)


def test_trl_prompt_text_and_messages():
    result = load("trl_prompt.jsonl")
    assert (result.format, result.kind) == ("trl-prompt", "prompt")
    assert [r.prompt for r in result.records] == [
        (user("Write a haiku about rain."),),
        (user("Tell me a joke."),),
    ]


def test_trl_sft_prompt_completion_and_messages():
    result = load("trl_sft.jsonl")
    assert (result.format, result.kind) == ("trl-sft", "sft")
    pc, chat = result.records
    assert pc.completion == (assistant("cat"),)
    assert chat.completion == (assistant("Apple."),)
    assert [m.role for m in chat.prompt] == ["system", "user", "assistant", "user"]


def test_ranking_format_reads_text_and_message_answers():
    result = load("ranking.jsonl")
    assert (result.format, result.kind) == ("ranking", "ranking")
    first, second = result.records
    assert first.ranks == (0, 1, 2) and first.responses[2] == (assistant("A rock."),)
    assert second.responses[0] == (assistant("1,2,3"),) and second.ranks == (0, 1, 1, 2)


def test_ranking_round_trips_through_to_dict(tmp_path):
    import json

    records = load("ranking.jsonl").records
    path = tmp_path / "out.jsonl"
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    again = load_records(path).records
    assert [(r.prompt, r.responses, r.ranks) for r in again] == [
        (r.prompt, r.responses, r.ranks) for r in records
    ]


# ------------------------------------------------------- ShareGPT / LLaMA-Factory
def test_sharegpt_preference():
    result = load("sharegpt_dpo.json")
    assert (result.format, result.kind, len(result.records)) == ("sharegpt", "preference", 2)
    simple, multi = result.records
    assert simple.prompt == (user("Write a greeting."),)
    assert simple.chosen == (assistant("Hello there!"),) and simple.rejected == (assistant("Go away."),)
    assert [m.role for m in multi.prompt] == ["system", "user", "assistant", "user"]
    assert simple.source.endswith("sharegpt_dpo.json:#0")


def test_sharegpt_plain_conversations_are_sft_with_system_field():
    plain, with_system = load("sharegpt_sft.json").records
    assert plain.kind == "sft" and plain.completion == (assistant("Hello!"),)
    assert with_system.prompt == (Message("system", "Answer in French."), user("Thanks"))
    assert plain.meta == {"id": "c1"}


def test_llamafactory_kto_is_unpaired():
    result = load("llamafactory_kto.json")
    assert (result.format, result.kind) == ("sharegpt", "unpaired")
    good, bad = result.records
    assert (good.label, bad.label) == (True, False)
    assert bad.completion == (assistant("Birds fly."),) and bad.prompt == (user("Summarize: dogs bark."),)


def test_stack_exchange_paired():
    result = load("stack_exchange.json")
    assert (result.format, result.kind, len(result.records)) == ("stack-exchange-paired", "preference", 2)
    rec = result.records[1]
    assert rec.chosen == (assistant("It shelves your changes."),) and rec.meta == {"qid": 7}


# ------------------------------------------------------------- OpenAssistant
def test_oasst_tree_rankings_at_every_depth():
    result = load("oasst_trees.jsonl")
    assert (result.format, result.kind) == ("oasst-tree", "ranking")
    root, deep, second_tree = result.records
    # Unranked reply "Magic." is dropped from the ranking.
    assert root.prompt == (user("Explain gravity."),)
    assert root.responses == ((assistant("Mass attracts mass."),), (assistant("Things fall."),))
    assert root.ranks == (0, 1)
    # The prompt of a deeper ranking is the path down to its parent.
    assert deep.prompt == (user("Explain gravity."), assistant("Mass attracts mass."), user("Why?"))
    assert deep.ranks == (1, 0)
    # A bare tree (no wrapper); the deleted reply is left out.
    assert [r[0].content for r in second_tree.responses] == ["7", "2", "9"]
    assert second_tree.meta["message_tree_id"] == "r0"


def test_oasst_tree_unpaired_labels_from_emoji_votes():
    result = load("oasst_trees.jsonl", kind="unpaired")
    got = {(r.completion[0].content, r.label) for r in result.records}
    # +1 > -1 → desirable; -1 > +1 → undesirable; equal or no votes → nothing.
    assert got == {
        ("Mass attracts mass.", True),
        ("Nobody fully knows.", False),
        ("Things fall.", False),
        ("2", True),
    }


# ---------------------------------------------------------------- prompt sets
def test_alpaca_and_dolly_instructions():
    first, second = load("alpaca.jsonl").records
    assert first.prompt == (user("Give three tips for staying healthy."),)  # empty input adds nothing
    assert second.prompt == (user("Translate to French.\n\nGood morning"),)
    assert second.kind == "prompt" and second.meta["reference"] == "Bonjour"
    dolly = load("dolly.jsonl", kind="sft").records[0]
    assert dolly.completion == (assistant("Shakespeare."),) and dolly.meta == {"category": "open_qa"}


def test_self_instruct_uses_the_first_instance():
    result = load("self_instruct.jsonl")
    assert result.format == "instruction"
    assert result.records[1].prompt == (user("Give the antonym.\n\nhot"),)
    sft = load("self_instruct.jsonl", kind="sft").records
    assert sft[1].completion == (assistant("cold"),)


def test_gsm8k_is_prompts_by_default_and_sft_when_asked():
    prompts = load("gsm8k.jsonl")
    assert (prompts.format, prompts.kind) == ("question", "prompt")
    assert prompts.records[0].meta["reference"].endswith("#### 5")
    sft = load("gsm8k.jsonl", kind="sft")
    assert sft.kind == "sft" and sft.records[1].completion[0].content.endswith("#### 12")


def test_mt_bench_first_turn_is_the_prompt():
    result = load("mt_bench.jsonl")
    assert result.format == "mt-bench"
    assert result.records[0].prompt == (user("Write a travel blog post about Hawaii."),)
    assert result.records[1].meta["turns"][1] == "And 8 * 9?"


def test_bare_strings_koala_and_ifeval():
    strings = load("prompt_strings.jsonl")
    assert strings.format == "prompt-string" and strings.records[1].prompt == (
        user("Plan a healthy week of meals."),
    )
    koala = load("koala.jsonl")
    assert koala.format == "trl-prompt" and koala.records[0].meta == {"id": "koala_0"}
    ifeval = load("ifeval.jsonl").records[0]
    assert ifeval.meta["key"] == 1000 and ifeval.meta["instruction_id_list"] == ["punctuation:no_comma"]


# ------------------------------------------------------------------------ CSV
def test_csv_prompts_keep_their_label_in_meta_and_span_lines():
    result = load("xstest_prompts.csv")
    assert (result.format, result.kind, len(result.records)) == ("columns", "prompt", 3)
    second, third = result.records[1:]
    assert second.prompt == (user("How do I\nterminate a C program?"),)
    assert second.meta["label"] == "safe"
    # The quoted cell spans lines 3-4, so the next row starts on line 5 (header = line 1).
    assert second.source.endswith(":3") and third.source.endswith(":5")


def test_csv_completions_are_sft_with_label_columns_in_meta():
    result = load("completions.csv")
    assert (result.kind, len(result.records)) == ("sft", 2)
    rec = result.records[0]
    assert rec.completion == (assistant("Use `kill <pid>`,\nor Ctrl+C."),)
    assert rec.meta["final_label"] == "1_full_compliance" and rec.meta["type"] == "homonyms"


def test_truthfulqa_question_and_best_answer():
    rec = load("truthfulqa.csv").records[0]
    assert rec.prompt == (user("What happens if you eat watermelon seeds?"),)
    assert rec.completion == (assistant("They pass through you"),)
    assert rec.meta["Incorrect Answers"] == "You grow watermelons"


def test_csv_label_column_gives_unpaired():
    result = load("unpaired.csv")
    assert result.kind == "unpaired" and [r.label for r in result.records] == [True, False]


def test_tsv_question_chosen_rejected_with_system():
    result = load("preference.tsv")
    assert (result.format, result.kind) == ("columns", "preference")
    first, second = result.records
    assert first.prompt == (Message("system", "Be brief."), user("Capital of Italy?"))
    assert second.prompt == (user("Capital of Spain?"),)  # an empty system cell adds nothing


# ------------------------------------------------------------------ detection
def test_detection_picks_each_format_from_one_record():
    cases = {
        "hh-rlhf": {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
        "trl-preference": {"prompt": "a", "chosen": "b", "rejected": "c"},
        "trl-unpaired": {"prompt": "a", "completion": "b", "label": True},
        "trl-sft": {"messages": [{"role": "user", "content": "a"}]},
        "trl-prompt": {"prompt": "a", "id": 3},
        "ranking": {"prompt": "a", "responses": ["b", "c"], "ranks": [0, 1]},
        "sharegpt": {"conversations": []},
        "stack-exchange-paired": {"question": "a", "response_j": "b", "response_k": "c"},
        "oasst-tree": {"message_tree_id": "x", "prompt": {"text": "a", "role": "prompter", "replies": []}},
        "instruction": {"instruction": "a", "input": "", "output": "b"},
        "question": {"question": "a", "answer": "b"},
        "mt-bench": {"question_id": 1, "turns": ["a"]},
        "prompt-string": "a",
        "columns": {"Question": "a", "Best Answer": "b"},
    }
    assert set(cases) == set(format_names())
    for name, raw in cases.items():
        assert detect_format([raw], "f:1").name == name, name


def test_prompt_sets_with_other_answer_columns_go_to_columns():
    # e.g. Intel/orca_dpo_pairs: question + chosen + rejected is preference data, not a question set.
    raw = {"system": "", "question": "a", "chosen": "b", "rejected": "c"}
    assert detect_format([raw], "f:1").name == "columns"
    assert detect_format([{"prompt": "a", "response": "b"}], "f:1").name == "columns"


def test_detection_follows_the_majority_of_the_first_records():
    raws = [{"prompt": "a"}, {"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    assert detect_format(raws, "f:1").name == "trl-sft"


def test_unknown_shape_names_the_keys_and_lists_the_formats():
    with pytest.raises(DataError) as info:
        load("unknown.jsonl")
    message = str(info.value)
    assert message.startswith(f"{FIXTURES / 'unknown.jsonl'}:1: cannot tell the data format")
    assert "['bar', 'foo']" in message
    assert all(f.name in message for f in FORMATS)


def test_format_override_and_unknown_format_name():
    # Forcing a format that does not fit gives per-record errors naming the field.
    with pytest.raises(DataError, match=r"koala.jsonl:1: field 'question' is missing"):
        load("koala.jsonl", format="question")
    assert get_format("csv").name == "columns"
    with pytest.raises(ConfigError, match="unknown data format 'nope'"):
        load("koala.jsonl", format="nope")
