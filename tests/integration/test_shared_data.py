"""Every real data file in ../shared/data loads with its documented record count.

The counts and the data-quality findings are those of ../shared/data/README.md.
Skipped when that folder is absent (a fresh checkout has no ../shared).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alignkit.data.inspect import inspect_data
from alignkit.data.load import load_records
from alignkit.errors import DataError

DATA = Path(__file__).parents[2].parent / "shared" / "data"
if not DATA.is_dir():
    pytest.skip(f"no shared data at {DATA}", allow_module_level=True)

pytestmark = pytest.mark.integration

XSTEST_COMPLETIONS = sorted((DATA / "labelled/xstest/model_completions").glob("*.csv"))

# path, load_records options, records, format, kind, skipped
EXPECTED = [
    ("preference/hh-rlhf-harmless-dev.jsonl", {}, 1796, "hh-rlhf", "preference", 0),
    ("preference/hh-rlhf-helpful-dev.jsonl", {"skip_invalid": True}, 1813, "hh-rlhf", "preference", 2),
    ("preference/oasst_en_100_tree.jsonl", {}, 212, "oasst-tree", "ranking", 0),
    ("preference/stack_exchange_paired_tiny.json", {}, 25, "stack-exchange-paired", "preference", 0),
    ("labelled/xstest/xstest_prompts.csv", {}, 450, "columns", "prompt", 0),
    *[(str(p.relative_to(DATA)), {}, 450, "columns", "sft", 0) for p in XSTEST_COMPLETIONS],
    ("labelled/truthfulqa/TruthfulQA.csv", {}, 817, "columns", "sft", 0),
    ("prompts/mt_bench_question.jsonl", {}, 80, "mt-bench", "prompt", 0),
    ("prompts/koala_test_set.jsonl", {}, 180, "trl-prompt", "prompt", 0),
    ("prompts/self_instruct_seed_tasks.jsonl", {}, 175, "instruction", "prompt", 0),
    ("prompts/self_instruct_user_oriented_instructions.jsonl", {}, 252, "instruction", "prompt", 0),
    ("prompts/ifeval_input_data.jsonl", {}, 541, "trl-prompt", "prompt", 0),
    ("prompts/gsm8k_test.jsonl", {}, 1319, "question", "prompt", 0),
    ("prompts/oasst_prompt_lottery_en_263.jsonl", {}, 263, "prompt-string", "prompt", 0),
    ("sft/gsm8k_train.jsonl", {"kind": "sft"}, 7473, "question", "sft", 0),
    ("format_fixtures/llamafactory_dpo_en_demo.json", {}, 300, "sharegpt", "preference", 0),
    ("format_fixtures/llamafactory_kto_en_demo.json", {}, 300, "sharegpt", "unpaired", 0),
]


def test_every_file_in_the_readme_is_checked():
    readme = (DATA / "README.md").read_text()
    listed = set(re.findall(r"^\| ([\w./*-]+) \|", readme, flags=re.MULTILINE)) - {"path"}
    covered = {path for path, *_ in EXPECTED}
    for entry in listed:
        matches = sorted(str(p.relative_to(DATA)) for p in DATA.glob(entry))
        assert matches, f"README lists {entry}, which is not there"
        assert set(matches) <= covered, f"{entry} is not checked here"
    assert len(XSTEST_COMPLETIONS) == 3


@pytest.mark.parametrize(
    ("path", "options", "count", "fmt", "kind", "skipped"), EXPECTED, ids=[e[0] for e in EXPECTED]
)
def test_file_loads_with_documented_count(path, options, count, fmt, kind, skipped):
    result = load_records(DATA / path, **options)
    assert (len(result.records), result.format, result.kind, len(result.skipped)) == (
        count,
        fmt,
        kind,
        skipped,
    )


def test_helpful_identical_pairs_are_errors_naming_their_lines():
    path = DATA / "preference/hh-rlhf-helpful-dev.jsonl"
    with pytest.raises(DataError) as info:
        load_records(path)
    message = str(info.value)
    assert message.startswith(f"{path}:555: chosen and rejected are identical")
    assert f"{path}:1676" in message


def test_oasst_gives_212_rankings_from_100_trees():
    path = DATA / "preference/oasst_en_100_tree.jsonl"
    rankings = load_records(path).records
    assert sum(1 for line in path.open() if line.strip()) == 100
    assert len(rankings) == 212
    assert all(len(r.responses) >= 2 for r in rankings)
    pairs = load_records(path, kind="preference").records
    assert len(pairs) == sum(len(r.to_pairs()) for r in rankings)


def test_gsm8k_train_is_prompts_by_default():
    result = load_records(DATA / "sft/gsm8k_train.jsonl", limit=5)
    assert result.kind == "prompt" and "####" in result.records[0].meta["reference"]


def test_xstest_completions_keep_their_labels():
    for path in XSTEST_COMPLETIONS:
        rec = load_records(path, limit=1).records[0]
        assert rec.completion and rec.meta["final_label"].startswith(("1_", "2_", "3_"))


def _lines(sources: list[str]) -> list[int]:
    return [int(s.rsplit(":", 1)[1]) for s in sources]


def _counts(found: dict[str, list[str]]) -> tuple[int, int, int]:
    """(empty final answers, dialogues that part early, identical pairs)."""
    return len(found["empty_final_answer"]), len(found["multi_turn_answer"]), len(found["identical_pair"])


def test_inspect_reports_the_documented_hh_findings():
    harmless = inspect_data(DATA / "preference/hh-rlhf-harmless-dev.jsonl")
    found = harmless["findings"]
    assert _counts(found) == (4, 2, 0)
    assert harmless["records"] == 1796 and harmless["skipped"] == 0

    helpful = inspect_data(DATA / "preference/hh-rlhf-helpful-dev.jsonl")
    found = helpful["findings"]
    assert _counts(found) == (3, 7, 2)
    assert _lines(found["identical_pair"]) == [555, 1676]
    assert helpful["records"] == 1813 and helpful["skipped"] == 2
    notes = "\n".join(helpful["notes"])
    assert "3 pairs with an empty final answer" in notes
    assert "7 pairs whose dialogues part before the last turn" in notes
    assert "2 pairs with identical chosen and rejected answers" in notes and "lines 555, 1676" in notes
