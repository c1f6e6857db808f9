"""Final-answer match for maths problems (GSM8K, MATH): 1.0 right, 0.0 wrong, None without a reference.

The reference comes from a record column, the first present of ``answer`` (GSM8K's
column), ``solution`` (MATH's, and TRL's ``accuracy_reward``) and ``reference`` (where
alignkit's loader keeps GSM8K's ``answer`` when it reads the file as question/answer
prompts). Its final answer is the text after the last ``####`` (GSM8K), else the last
``\\boxed{...}`` (MATH), else the whole text when it is a value (not a sentence), else its last number.

The completion's final answer is its last ``\\boxed{...}`` (nested braces allowed), else the
first number after its last ``####``, else its last number. Numbers are compared exactly as
fractions after normalising: commas, ``$``, ``%``, units and LaTeX spacing are dropped
(``$1,000.00`` = 1000, 0.50 = 0.5, ``\\frac{1}{2}`` = 1/2 = 0.5, ``-3`` and ``−3`` alike). A
boxed answer that is no number (``x^2+1``, ``(1,2)``) is compared as text, without spaces
and LaTeX sizing commands.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

REFERENCE_COLUMNS = ("answer", "solution", "reference")

_SIGN = r"(?<![\w.])[-−]?"  # a minus that is not a hyphen inside a word or range ("3-4")
_NUMBER = re.compile(
    _SIGN + r"\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?!\d)|" + _SIGN + r"\.\d+"
)
_LATEX_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\quad|\\displaystyle|\^\{?\\circ\}?|\\\$|\\%|\$|%")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{[^{}]*\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}|\\[dt]?frac\s*(\d)\s*(\d)")
_PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")  # two words in a row: a sentence, not a value
_PLAIN = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+")


def math_reward(
    prompts: list[str] | None = None, completions: list[Any] | None = None, **kwargs: Any
) -> list[float | None]:
    """1.0 when a completion's final answer equals its record's reference answer, 0.0 when not,
    None when the record has no reference (no ``answer`` / ``solution`` / ``reference`` value)."""
    completions = list(completions or [])
    columns = [kwargs.get(name) for name in REFERENCE_COLUMNS]
    out: list[float | None] = []
    for i, completion in enumerate(completions):
        reference = next((c[i] for c in columns if c is not None and _present(c[i])), None)
        if reference is None:
            out.append(None)
            continue
        expected = reference_answer(str(reference))
        given = final_answer(_text(completion))
        out.append(
            1.0 if expected is not None and given is not None and same_answer(given, expected) else 0.0
        )
    return out


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _text(completion: Any) -> str:
    """A completion as text; TRL's conversational form (a list of messages) gives its last content."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


# ------------------------------------------------------------------------------------------ extraction


def last_boxed(text: str) -> str | None:
    """The contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces kept; None if none closes."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for j in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[start:j].strip()
    return None


def last_number(text: str) -> str | None:
    """The last number in free text (``1,000``, ``-3.5``, ``$12``, ``3/4``), as written."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def final_answer(completion: str) -> str | None:
    """A completion's final answer: last boxed, else the number after the last ``####``, else the last number."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    if "####" in completion:
        after = _NUMBER.search(completion.rpartition("####")[2])
        if after is not None:
            return after[0]
    return last_number(completion)


def reference_answer(reference: str) -> str | None:
    """A reference's final answer: after ``####``, else boxed, else the whole text if it is a value
    (a number or a formula, not a sentence), else its last number."""
    text = reference.strip()
    if "####" in text:
        return text.rpartition("####")[2].strip() or None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if to_number(text) is not None or not _PROSE.search(text):  # "42", "x^2 + 1", "(1, 2)"
        return text or None
    return last_number(text) or text


# ------------------------------------------------------------------------------------------ comparison


def to_number(answer: str) -> Fraction | None:
    """An answer as an exact number, or None when it is not one number.

    Drops ``$``, ``%``, commas, ``\\text{...}`` units, degrees and LaTeX spacing; reads
    ``\\frac{a}{b}``, ``a/b``, decimals and a trailing unit word ("12 cm", "5 apples").
    """
    text = _TEXT.sub("", answer)
    text = _LATEX_DROP.sub("", text).replace("−", "-").strip().rstrip(".").strip()
    if "=" in text:  # "x = 5"
        text = text.rpartition("=")[2].strip()
    text = _FRAC.sub(lambda m: f"({m[1] or m[3]})/({m[2] or m[4]})", text)
    text = text.replace(" ", "").replace("{", "").replace("}", "")
    sign = Fraction(1)
    if text.startswith("-"):
        sign, text = Fraction(-1), text[1:]
    parts = text.split("/")
    if len(parts) > 2:
        return None
    values = [_plain(p.strip("()")) for p in parts]
    if any(v is None for v in values):
        word = re.fullmatch(r"(\d[\d,]*(?:\.\d+)?|\.\d+)[A-Za-z]+\.?", text)  # "12cm" (spaces are gone)
        values = [_plain(word[1])] if word and len(parts) == 1 else values
    if any(v is None for v in values) or (len(values) == 2 and values[1] == 0):
        return None
    number = values[0] if len(values) == 1 else values[0] / values[1]  # type: ignore[operator]
    return sign * number  # type: ignore[operator]


def _plain(text: str) -> Fraction | None:
    """``1,000`` / ``-0.50`` / ``.5`` → Fraction; None for anything else."""
    if not _PLAIN.fullmatch(text):
        return None
    return Fraction(text.replace(",", "").replace("−", "-"))


def normalise_text(answer: str) -> str:
    """A non-numeric answer for comparison: no spaces, ``\\dfrac`` = ``\\frac``, no sizing, no trailing dot."""
    text = _LATEX_DROP.sub("", answer)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"([\^_])\{(\w)\}", r"\1\2", text)  # x^{2} = x^2
    return re.sub(r"\s+", "", text).rstrip(".").lower()


def same_answer(given: str, expected: str) -> bool:
    """Whether two final answers match: exactly as numbers when both are numbers, else as normalised text."""
    a, b = to_number(given), to_number(expected)
    if a is not None and b is not None:
        return a == b
    return normalise_text(given) == normalise_text(expected)


__all__ = [
    "REFERENCE_COLUMNS",
    "final_answer",
    "last_boxed",
    "last_number",
    "math_reward",
    "normalise_text",
    "reference_answer",
    "same_answer",
    "to_number",
]
