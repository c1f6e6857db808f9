"""Decontamination check: how much the shipped IFEval training prompts share with IFEval's own 541 prompts.

``recipes/data/ifeval_train.jsonl`` (written by ``alignkit data instructions``) is meant to share nothing
with IFEval but the instruction types. This compares the two prompt sets as lower-cased word sequences
(``\\w+`` runs):

- **shared 8-grams**: distinct word 8-grams found in both sets (the usual contamination test, as in the
  GPT-3 and Llama papers' n-gram overlap checks), each printed with how many prompts of each set hold it;
- **longest shared n-gram**: the largest n for which some word n-gram occurs in both sets, with an example;
- **most similar pairs**: for every training prompt, the IFEval prompt with the highest Jaccard similarity
  of their word-3-gram sets; the top pairs are printed and the largest value reported;
- **exact duplicates**: training prompts equal to an IFEval prompt (after lower-casing and joining words).

The last line is JSON: ``train_prompts``, ``ifeval_prompts``, ``shared_8grams``, ``longest_shared_ngram``,
``max_jaccard3``, ``exact_duplicates``. Without IFEval's file it prints ``{"skipped": ...}`` and exits 0.

    .venv/bin/python benchmarks/ifeval_overlap.py [--ifeval PATH] [--train PATH] [--top 5]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IFEVAL = ROOT.parent / "shared" / "data" / "prompts" / "ifeval_input_data.jsonl"
TRAIN = ROOT / "recipes" / "data" / "ifeval_train.jsonl"
WORD = re.compile(r"\w+")

Grams = set[tuple[str, ...]]


def load_prompts(path: Path) -> list[str]:
    """The ``prompt`` field of every line of a JSONL file."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> Grams:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def shared_ngrams(
    train: list[list[str]], ifeval: list[list[str]], n: int
) -> dict[tuple[str, ...], tuple[int, int]]:
    """Each n-gram found in both sets -> (training prompts holding it, IFEval prompts holding it)."""
    in_train = Counter(g for t in train for g in ngrams(t, n))
    in_ifeval = Counter(g for t in ifeval for g in ngrams(t, n))
    return {g: (in_train[g], in_ifeval[g]) for g in in_train.keys() & in_ifeval.keys()}


def longest_shared(train: list[list[str]], ifeval: list[list[str]]) -> tuple[int, tuple[str, ...] | None]:
    """The largest n with a word n-gram in both sets, and one such n-gram (0, None when no word is shared)."""
    best: tuple[int, tuple[str, ...] | None] = (0, None)
    n = 1
    while True:
        shared = shared_ngrams(train, ifeval, n)
        if not shared:
            return best
        best = (n, max(shared, key=lambda g: shared[g]))
        n += 1


def jaccard(a: Grams, b: Grams) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def most_similar(train: list[list[str]], ifeval: list[list[str]]) -> list[tuple[float, int, int]]:
    """(word-3-gram Jaccard, training index, IFEval index) of each training prompt's closest IFEval prompt,
    highest first; an inverted index leaves out pairs without a shared 3-gram."""
    ifeval_grams = [ngrams(t, 3) for t in ifeval]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for j, grams in enumerate(ifeval_grams):
        for g in grams:
            index[g].append(j)
    pairs = []
    for i, tokens in enumerate(train):
        grams = ngrams(tokens, 3)
        candidates = {j for g in grams for j in index.get(g, ())}
        if candidates:
            pairs.append(max((jaccard(grams, ifeval_grams[j]), i, j) for j in candidates))
    return sorted(pairs, reverse=True)


def short(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def report(train_prompts: list[str], ifeval_prompts: list[str], top: int) -> dict[str, object]:
    """Print the findings (module docstring) and return the JSON line's fields."""
    train = [words(p) for p in train_prompts]
    ifeval = [words(p) for p in ifeval_prompts]
    eight = shared_ngrams(train, ifeval, 8)
    print(f"shared word 8-grams: {len(eight)}")
    for g, (nt, ni) in sorted(eight.items(), key=lambda kv: -kv[1][0])[:20]:
        print(f"  {' '.join(g)!r}: {nt} training prompts, {ni} IFEval prompts")
    n, example = longest_shared(train, ifeval)
    print(f"longest shared word n-gram: {n}" + (f" ({' '.join(example)!r})" if example else ""))
    pairs = most_similar(train, ifeval)
    print(f"most similar pairs (word-3-gram Jaccard), top {top}:")
    for score, i, j in pairs[:top]:
        print(f"  {score:.3f}\n    train:  {short(train_prompts[i])}\n    ifeval: {short(ifeval_prompts[j])}")
    ifeval_texts = {" ".join(t) for t in ifeval}
    return {
        "train_prompts": len(train),
        "ifeval_prompts": len(ifeval),
        "shared_8grams": len(eight),
        "longest_shared_ngram": n,
        "max_jaccard3": round(pairs[0][0], 4) if pairs else 0.0,
        "exact_duplicates": sum(" ".join(t) in ifeval_texts for t in train),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ifeval", type=Path, default=IFEVAL, help="IFEval's prompts (input_data.jsonl)")
    parser.add_argument("--train", type=Path, default=TRAIN, help="the training prompts to check")
    parser.add_argument("--top", type=int, default=5, help="most similar pairs to print")
    args = parser.parse_args()
    if not args.ifeval.is_file():
        why = f"no IFEval prompts at {args.ifeval} (give --ifeval PATH)"
        print(f"ifeval overlap skipped: {why}")
        print(json.dumps({"skipped": why}))
        return
    print(json.dumps(report(load_prompts(args.train), load_prompts(args.ifeval), args.top)))


if __name__ == "__main__":
    main()
