"""Text measures the IFEval checks share: words, sentences, word tokens for capitals, the language.

What each counts, and how it stands to Google's checker (`instruction_following_eval`, as lm-eval 0.4.13
ships it):

- **words** (`count_words`): runs of word characters, ``\\w+`` (the reference's ``RegexpTokenizer(r"\\w+")``;
  the same count). "don't" is two words, "e-mail" two, "3.5" two.
- **sentences** (`split_sentences`, `count_sentences`): the reference counts with nltk's punkt model, whose
  data cannot be downloaded here; we split with one documented regular expression instead. A sentence
  ends at a run of ``.``, ``!`` or ``?`` (with any closing quotes or brackets after it) followed by
  whitespace or the end of the text, except after a short list of abbreviations (`ABBREVIATIONS`: "Mr.",
  "Dr.", "e.g.", "vs." ...). Newlines alone do not end a sentence (nor do they for punkt), so a heading or
  a list item without a full stop joins the next sentence, and a numbered item "1." ends one. Pieces
  without a letter or digit are not sentences.
- **word tokens** (`word_tokens`, for `change_case:capital_word_frequency`): the reference uses nltk's
  ``word_tokenize`` (punkt, then the improved Treebank tokenizer) and counts the tokens that are
  ``str.isupper()``. Only where a token boundary falls between two cased pieces changes that count, so we
  keep the Treebank rules that put one there: split at whitespace, at ``; @ # $ % & ? ! *``, brackets,
  double quotes and curly quotes, dashes (``--`` and U+2012-2015), ellipses, and a ``:`` or ``,`` not
  followed by a digit; split off the contractions ``n't 's 'm 'd 'll 're 've`` and the two halves of
  "cannot", "gonna", "gotta", "gimme", "lemme" and "wanna". A single hyphen, a slash and a full stop inside
  a word do not split ("WELL-KNOWN" and "U.S." are one word each).
- **language** (`detect_language`): langdetect (a port of Google's language-detection, as the reference
  uses), with its own detector factory seeded with `LANGDETECT_SEED` so the same text always gets the same
  answer (the reference leaves langdetect unseeded, so its verdict on mixed text can change between runs).
"""

from __future__ import annotations

import functools
import re

LANGDETECT_SEED = 0
ABBREVIATIONS = (
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "e.g",
    "i.e",
    "u.s",
    "inc",
    "ltd",
    "co",
)

_WORD = re.compile(r"\w+")
# a run of terminators, any closers, then whitespace or the end: the end of a sentence
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_LAST_WORD = re.compile(r"([\w.]+)\.$")
_HAS_WORD = re.compile(r"\w")

_SEPARATORS = re.compile(
    r"\s+|[;@#$%&?!*()\[\]{}<>«»“”‘’„\"`\u2012-\u2015]|--|\.{2,}|[:,](?!\d)",
)
_CONTRACTION = re.compile(r"(?<=[^'])(n't|N'T|'ll|'LL|'re|'RE|'ve|'VE|'[sSmMdD]|')$")
_SPLIT_WORDS = re.compile(r"(?i)^(can)(not)$|^(gim)(me)$|^(gon)(na)$|^(got)(ta)$|^(lem)(me)$|^(wan)(na)$")


def count_words(text: str) -> int:
    """Runs of word characters (``\\w+``)."""
    return len(_WORD.findall(text))


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` by the rule in the module docstring (pieces with a letter or digit)."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start() + 1]
        last = _LAST_WORD.search(before)
        single_stop = match.group().rstrip("\"'”’)]") == "."
        if single_stop and last and last.group(1).lower() in ABBREVIATIONS:
            continue
        sentences.append(text[start : match.end()])
        start = match.end()
    sentences.append(text[start:])
    return [s.strip() for s in sentences if _HAS_WORD.search(s)]


def count_sentences(text: str) -> int:
    """How many sentences `split_sentences` finds."""
    return len(split_sentences(text))


def word_tokens(text: str) -> list[str]:
    """Word tokens by the Treebank rules kept in the module docstring (punctuation-only pieces dropped)."""
    tokens: list[str] = []
    for piece in _SEPARATORS.split(text):
        if not piece:
            continue
        contraction = _CONTRACTION.search(piece)
        head, tail = (piece[: contraction.start()], contraction.group()) if contraction else (piece, "")
        whole = _SPLIT_WORDS.match(head)
        if whole:
            tokens.extend(g for g in whole.groups() if g)
        else:
            tokens.append(head)
        if tail:
            tokens.append(tail)
    return [t for t in tokens if t]


@functools.lru_cache(maxsize=1)
def _detector_factory():
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(LANGDETECT_SEED)
    return factory


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code langdetect gives ``text`` (e.g. ``en``, ``zh-cn``); None when it cannot tell
    (no letters: the reference then counts the instruction as followed)."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _detector_factory().create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


__all__ = [
    "ABBREVIATIONS",
    "LANGDETECT_SEED",
    "count_sentences",
    "count_words",
    "detect_language",
    "split_sentences",
    "word_tokens",
]
