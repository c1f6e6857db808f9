"""The ``ifeval`` verifier against the reference checker (lm-eval 0.4.13's copy of Google's IFEval code).

Answers: the hand-made cases of the tests (``tests/data/fixtures/ifeval_cases.jsonl``, each type followed, not
followed and followed only loosely); for every IFEval prompt (``--prompts``, default ``../shared/data/prompts/ifeval_input_data.jsonl``),
``--per-prompt`` synthetic answers built by mutating a base answer near each of the prompt's constraints
(a keyword inserted one time too few or just enough, one bullet too many, the end phrase in quotes, a
chatty first line that only the loose score forgives, ...), plus, with ``--answers FILE``, real model
answers (the ``--output`` of ``alignkit eval instructions``: ``prompt``, ``response``, ``instruction_id_list``,
``kwargs`` per line). Every instruction of every answer is judged strict and loose by both checkers.

The reference runs in a child process of a Python where ``lm_eval`` imports (``--reference-python``, or
``$IFEVAL_REFERENCE_PYTHON``, or this Python when it has the ``ifeval-reference`` extra installed). Only
there, and only here, is the reference patched: nltk's download is switched off, and punkt's sentence
splitting (which nltk cannot load offline: it raises LookupError in ``count_sentences`` and in
``word_tokenize``) is replaced by alignkit's regex splitter, so sentence counts agree by construction and
the capital-word counts compare nltk's Treebank tokenizer with ours (``--reference-sentences plain`` gives
the reference the plainest split instead, after every ``.``, ``!`` or ``?`` and whitespace, to show how much
the choice of splitter moves the figures). langdetect is seeded (0) on both
sides. Instructions where the reference draws a random value (a letter_frequency "letter" that is not a
letter) are counted apart and left out of the agreement.

The last line is JSON: ``strict_agreement`` and ``loose_agreement`` (fractions of instruction verdicts that
match), ``prompt_strict_agreement``, counts, and ``by_type`` (per type: instructions, strict and loose
agreement). Without a reference it prints ``{"skipped": ...}`` and exits 0.

    .venv/bin/python benchmarks/ifeval_agreement.py --reference-python /tmp/ifeval-ref/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT.parent / "shared" / "data" / "prompts" / "ifeval_input_data.jsonl"
HAND_MADE = ROOT / "tests" / "data" / "fixtures" / "ifeval_cases.jsonl"
TEXT_PY = ROOT / "src" / "alignkit" / "rewards" / "verifiers" / "ifeval" / "text.py"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ifeval_answers import synthetic_answers  # noqa: E402

# ------------------------------------------------------------------------------------------ the reference side


def plain_split(value: str) -> list[str]:
    """The plainest regex split: after ``.``, ``!`` or ``?`` and whitespace (``--reference-sentences plain``)."""
    import re

    return [s for s in re.split(r"(?<=[.!?])\s+", value.strip()) if s]


def reference_worker(cases_path: str, out_path: str, sentences: str = "alignkit") -> None:
    """In the reference's Python: judge every case with lm-eval's IFEval code (patched as the module says)."""
    import random as stdlib_random

    import nltk

    nltk.download = lambda *a, **k: False  # offline: no download attempt on import
    spec = importlib.util.spec_from_file_location("alignkit_ifeval_text", TEXT_PY)
    text = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(text)

    split = text.split_sentences if sentences == "alignkit" else plain_split

    class Splitter:
        def tokenize(self, value):
            return split(value)

    import langdetect
    import nltk.tokenize
    from lm_eval.tasks.ifeval import instructions_util, utils

    langdetect.DetectorFactory.seed = 0
    instructions_util._get_sentence_tokenizer = lambda: Splitter()
    nltk.tokenize.sent_tokenize = lambda value, language="english": split(value)
    stdlib_random.seed(0)
    with open(cases_path, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as out:
        for line in src:
            case = json.loads(line)
            inp = utils.InputExample(
                key=0,
                instruction_id_list=case["instruction_id_list"],
                prompt=case["prompt"],
                kwargs=case["kwargs"],
            )
            try:
                strict = utils.test_instruction_following_strict(
                    inp, case["response"]
                ).follow_instruction_list
                loose = utils.test_instruction_following_loose(inp, case["response"]).follow_instruction_list
                out.write(json.dumps({"strict": strict, "loose": loose}) + "\n")
            except Exception as e:  # a crash of the reference is a result too
                out.write(json.dumps({"error": f"{type(e).__name__}: {str(e)[:200]}"}) + "\n")


def find_reference_python(given: str | None) -> str | None:
    """The Python to run the reference with, or None when there is none."""
    given = given or os.environ.get("IFEVAL_REFERENCE_PYTHON")
    if given:
        return given
    return sys.executable if importlib.util.find_spec("lm_eval") is not None else None


# ------------------------------------------------------------------------------------------ comparison


def reference_is_random(instruction_id: str, kwargs: dict) -> bool:
    """Where the reference draws a random argument instead of using the record's."""
    letter = str(kwargs.get("letter") or "")
    return instruction_id == "keywords:letter_frequency" and not (
        len(letter) == 1 and letter.isascii() and letter.isalpha()
    )


def compare(cases: list[dict], ours: list, theirs: list[dict]) -> dict:
    """Agreement figures over every instruction verdict (see the module docstring); per type also the share
    the reference calls followed (strict, loose), to show the answers test both sides of each check."""
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # n, agree s/l, followed s/l
    prompts = [0, 0]
    excluded, errors, examples = 0, 0, []
    for case, mine, ref in zip(cases, ours, theirs, strict=True):
        if "error" in ref:
            errors += 1
            continue
        keep = [
            not reference_is_random(i, k or {})
            for i, k in zip(case["instruction_id_list"], case["kwargs"], strict=True)
        ]
        excluded += keep.count(False)
        for j, name in enumerate(case["instruction_id_list"]):
            if not keep[j]:
                continue
            s, lo = mine.strict[j] == ref["strict"][j], mine.loose[j] == ref["loose"][j]
            row = by_type[name]
            row[:] = [
                row[0] + 1,
                row[1] + s,
                row[2] + lo,
                row[3] + ref["strict"][j],
                row[4] + ref["loose"][j],
            ]
            if not (s and lo) and len(examples) < 20:
                examples.append(
                    {
                        "type": name,
                        "ours": [mine.strict[j], mine.loose[j]],
                        "reference": [ref["strict"][j], ref["loose"][j]],
                        "response": case["response"][:300],
                    }
                )
        if all(keep):
            prompts[0] += 1
            prompts[1] += all(mine.strict) == all(ref["strict"])
    n = sum(r[0] for r in by_type.values())
    return {
        "answers": len(cases),
        "instructions": n,
        "strict_agreement": sum(r[1] for r in by_type.values()) / max(n, 1),
        "loose_agreement": sum(r[2] for r in by_type.values()) / max(n, 1),
        "prompt_strict_agreement": prompts[1] / max(prompts[0], 1),
        "excluded_random_in_reference": excluded,
        "reference_errors": errors,
        "by_type": {
            k: {
                "n": r[0],
                "strict": r[1] / r[0],
                "loose": r[2] / r[0],
                "followed_strict": r[3] / r[0],
                "followed_loose": r[4] / r[0],
            }
            for k, r in sorted(by_type.items())
        },
        "disagreements": examples,
        "accuracies": {"ours": accuracies_of(ours, theirs), "reference": accuracies_of(theirs, theirs)},
    }


def accuracies_of(verdicts: list, theirs: list[dict]) -> dict:
    """IFEval's four accuracies from one side's verdicts (answers the reference could judge)."""
    rows = [
        (list(v.strict), list(v.loose)) if hasattr(v, "strict") else (v["strict"], v["loose"])
        for v, ref in zip(verdicts, theirs, strict=True)
        if "error" not in ref
    ]
    flat = [(s, lo) for strict, loose in rows for s, lo in zip(strict, loose, strict=True)]
    n, p = max(len(flat), 1), max(len(rows), 1)
    return {
        "prompt_strict": sum(all(s) for s, _ in rows) / p,
        "inst_strict": sum(s for s, _ in flat) / n,
        "prompt_loose": sum(all(lo) for _, lo in rows) / p,
        "inst_loose": sum(lo for _, lo in flat) / n,
    }


def load_cases(args) -> list[dict]:
    """The answers to judge: hand-made (the test's fixture), synthetic, and real ones (``--answers``)."""
    cases = []
    for line in HAND_MADE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        ids, kwargs = [row["instruction_id"]], [row["kwargs"]]
        cases.append(
            {
                "prompt": "",
                "instruction_id_list": ids,
                "kwargs": kwargs,
                "response": row["response"],
                "source": "hand-made",
            }
        )
    lines = Path(args.prompts).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    rng = random.Random(args.seed)
    for record in records:
        for response in synthetic_answers(record, rng, args.per_prompt):
            cases.append(
                {
                    **{k: record[k] for k in ("prompt", "instruction_id_list", "kwargs")},
                    "response": response,
                    "source": "synthetic",
                }
            )
    for path in args.answers:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                cases.append(
                    {
                        **{k: row[k] for k in ("prompt", "instruction_id_list", "kwargs")},
                        "response": row["response"],
                        "source": "model",
                    }
                )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", default=str(PROMPTS))
    parser.add_argument(
        "--answers", action="append", default=[], help="real answers (eval instructions --output)"
    )
    parser.add_argument("--per-prompt", type=int, default=24, help="synthetic answers per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-python", default=None)
    parser.add_argument(
        "--reference-sentences",
        choices=("alignkit", "plain"),
        default="alignkit",
        help="the reference's sentence split: alignkit's (default) or the plainest regex split",
    )
    parser.add_argument(
        "--reference-worker", nargs=3, metavar=("CASES", "OUT", "SPLIT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.reference_worker:
        reference_worker(*args.reference_worker)
        return
    python = find_reference_python(args.reference_python)
    if python is None or not Path(args.prompts).is_file():
        why = (
            "lm-eval is not importable (pip install -e '.[ifeval-reference]' or --reference-python)"
            if python is None
            else f"no {args.prompts}"
        )
        print(f"ifeval agreement skipped: {why}")
        print(json.dumps({"skipped": why}))
        return

    from alignkit.rewards.verifiers.ifeval import judge_record

    cases = load_cases(args)
    ours = [judge_record(c["response"], c["instruction_id_list"], c["kwargs"]) for c in cases]
    with tempfile.TemporaryDirectory() as tmp:
        cases_path, out_path = Path(tmp) / "cases.jsonl", Path(tmp) / "verdicts.jsonl"
        cases_path.write_text(
            "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8"
        )
        proc = subprocess.run(
            [
                python,
                __file__,
                "--reference-worker",
                str(cases_path),
                str(out_path),
                args.reference_sentences,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"the reference worker failed:\n{proc.stderr[-3000:]}")
        theirs = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    result = {"reference": f"lm-eval 0.4.13 (sentences: {args.reference_sentences} split; langdetect seed 0)"}
    parts = {}
    for source in ("hand-made", "synthetic", "model"):
        pick = [i for i, c in enumerate(cases) if c["source"] == source]
        if pick:
            parts[source] = compare(
                [cases[i] for i in pick], [ours[i] for i in pick], [theirs[i] for i in pick]
            )
    parts["all"] = compare(cases, ours, theirs)
    for name, part in parts.items():
        print(
            f"\n{name}: {part['answers']} answers, {part['instructions']} instruction verdicts, "
            f"strict {part['strict_agreement']:.4f}, loose {part['loose_agreement']:.4f}, "
            f"prompt-strict {part['prompt_strict_agreement']:.4f}, reference errors {part['reference_errors']}"
        )
        for side, acc in part["accuracies"].items():
            print(f"  {side:9} " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    for name, part in parts.items():
        print(f"\n{name}: {'type':44} {'n':>6} {'strict':>7} {'loose':>7}  followed s/l (reference)")
        for kind, row in part["by_type"].items():
            print(
                f"{'':{len(name) + 2}}{kind:44} {row['n']:6d} {row['strict']:7.4f} {row['loose']:7.4f}  "
                f"{row['followed_strict']:.2f} / {row['followed_loose']:.2f}"
            )
    for example in parts["all"]["disagreements"][:10]:
        print("disagreement:", json.dumps(example, ensure_ascii=False)[:400])
    keys = (
        "answers",
        "instructions",
        "strict_agreement",
        "loose_agreement",
        "prompt_strict_agreement",
        "excluded_random_in_reference",
        "reference_errors",
    )
    result.update({k: parts["all"][k] for k in keys})
    result.update(
        {name: {k: part[k] for k in (*keys, "accuracies")} for name, part in parts.items() if name != "all"}
    )
    result["by_type"] = {
        k: [r["n"], round(r["strict"], 4), round(r["loose"], 4)] for k, r in parts["all"]["by_type"].items()
    }
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
