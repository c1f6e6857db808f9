"""The simulated annotator: a transparent rule standing in for people in `alignkit demo` and tests.

Real preference data comes from people (`alignkit label`) or an AI judge (`alignkit judge`). The demo
needs labels on a fresh machine in minutes, with a "gold" preference that a reward model can only
approximate, so that over-optimisation of the proxy is measurable (Gao et al. 2022, "Scaling Laws for
Reward Model Overoptimization", arXiv:2210.10760, use a larger reward model as the gold labeller in the
same way). The rule is deliberately simple and public, and it is NOT plain length:

    score(prompt, answer) =   2.0 * relevance        (share of the prompt's content words the answer uses;
                                                      a system message and role labels are not counted)
                            + 1.0 * complete         (the answer ends a sentence: . ! ? ) " ` or a code fence)
                            - 3.0 * repetition       (share of the answer's word 3-grams that repeat)
                            - 2.0 * refusal          (`habits.is_refusal`: full or partial refusal)
                            - 1.0 * ai_disclaimer    ("As an AI language model", ...)
                            - 1.0 * trailing_filler  (repeated "please", "!!!", "I hope this helps!" tails)
                            - 0.5 * apology
                            - length_penalty         (0 for 5..120 words; 0.5 per missing word under 5,
                                                      0.02 per word over 120)

An empty answer scores -3. Relevance counts distinct lower-cased words of three or more letters (or any
number) that are not stop words; a prompt with none of them gives relevance 1 for every answer. Ties
(scores within ``TIE_EPS``) are ties: the judge records no winner.

Everything here is pure text in, float out, so the score of any answer can be checked by hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from alignkit.feedback.judges.base import JudgeInput, Verdict

WEIGHTS = {
    "relevance": 2.0,
    "complete": 1.0,
    "repetition": -3.0,
    "refusal": -2.0,
    "ai_disclaimer": -1.0,
    "trailing_filler": -1.0,
    "apology": -0.5,
}
MIN_WORDS, MAX_WORDS = 5, 120
SHORT_PENALTY, LONG_PENALTY = 0.5, 0.02
EMPTY_SCORE = -3.0
TIE_EPS = 1e-6
NAME = "simulated"

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP_WORDS = """
    a about above after again all also am an and any are as at be because been before being below between
    both but by can could did do does doing done down during each few for from further had has have having
    he her here hers him his how i if in into is it its itself just let me more most my no nor not now of
    off on once only or other our ours out over own please same she should so some such than that the
    their theirs them then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours give tell write make explain describe
    name list use using one two three
    """
_STOP = frozenset(_STOP_WORDS.split())
_ENDS = re.compile(r"""([.!?)"'`\]]|```)\s*$""")


def words(text: str) -> list[str]:
    """Lower-cased words (letters, digits, inner apostrophe)."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    """Distinct words that carry meaning: not stop words, three letters or more (numbers always count)."""
    return {w for w in words(text) if w not in _STOP and (len(w) >= 3 or w.isdigit())}


_TURN = re.compile(r"(?:^|\n\n)(System|User|Assistant|Tool): ")


def request_text(prompt: str) -> str:
    """The words a person asked for: a role-labelled conversation (`conversation_text`: "System: ...\n\nUser:
    ...") without its system turns and role labels; plain text as it is."""
    if not _TURN.match(prompt):
        return prompt
    parts = _TURN.split(prompt)[1:]  # role, text, role, text, ...
    return "\n\n".join(text for role, text in zip(parts[::2], parts[1::2], strict=True) if role != "System")


def relevance(prompt: str, answer: str) -> float:
    """Share of the prompt's content words that the answer uses, in [0, 1] (1 when the prompt has none).

    The prompt's words are those of its request (`request_text`): a system message and the role labels of a
    conversation are not what the user asked about."""
    wanted = content_words(request_text(prompt))
    if not wanted:
        return 1.0
    have = set(words(answer))
    # A light stem match: "colours" in the prompt counts "colour" in the answer and vice versa.
    hits = sum(1 for w in wanted if w in have or w.rstrip("s") in have or w + "s" in have)
    return hits / len(wanted)


def is_complete(answer: str) -> bool:
    """Does the answer end a sentence (or a code block)? A cut-off answer does not."""
    return bool(_ENDS.search(answer.strip()))


def repetition(answer: str, n: int = 3) -> float:
    """Share of the answer's word n-grams that repeat an earlier one in it (0: none; near 1: a loop)."""
    ws = words(answer)
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def length_penalty(answer: str) -> float:
    n = len(words(answer))
    if n < MIN_WORDS:
        return SHORT_PENALTY * (MIN_WORDS - n)
    return LONG_PENALTY * max(0, n - MAX_WORDS)


def score_parts(prompt: str, answer: str) -> dict[str, float]:
    """Each term of the rule before weighting (habits are 0/1), plus ``length_penalty``."""
    from alignkit.habits.refusal import is_refusal
    from alignkit.habits.style import has_ai_disclaimer, has_apology, has_trailing_filler

    return {
        "relevance": relevance(prompt, answer),
        "complete": float(is_complete(answer)),
        "repetition": repetition(answer),
        "refusal": float(is_refusal(answer)),
        "ai_disclaimer": float(has_ai_disclaimer(answer)),
        "trailing_filler": float(has_trailing_filler(answer)),
        "apology": float(has_apology(answer)),
        "length_penalty": length_penalty(answer),
    }


def simulated_score(prompt: str, answer: str) -> float:
    """The simulated annotator's score of ``answer`` to ``prompt`` (higher is better; see the module doc)."""
    if not answer.strip():
        return EMPTY_SCORE
    parts = score_parts(prompt, answer)
    return sum(WEIGHTS[k] * parts[k] for k in WEIGHTS) - parts["length_penalty"]


def simulated_scores(prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
    return [simulated_score(p, a) for p, a in zip(prompts, answers, strict=True)]


class SimulatedJudge:
    """`alignkit judge --judge simulated`: the rule above as a pairwise judge (no model, no randomness).

    The verdict's ``first`` is sigmoid(score_a - score_b), so its confidence grows with the gap. Scores
    within ``tie_margin`` of each other are a tie (no winner): an annotator's "about the same", which
    preference data collection offers people too (the gold score itself does not change).
    """

    name = NAME

    def __init__(self, tie_margin: float = 0.0):
        self.tie_margin = max(float(tie_margin), TIE_EPS)

    def judge(self, inputs: list[JudgeInput]) -> list[Verdict]:
        import math

        verdicts = []
        for inp in inputs:
            a = simulated_score(inp.prompt, inp.answer_a)
            b = simulated_score(inp.prompt, inp.answer_b)
            gap = a - b
            winner = None if abs(gap) <= self.tie_margin else (0 if gap > 0 else 1)
            first = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, gap))))
            verdicts.append(Verdict(winner, first=first, reply=f"{a:.3f} vs {b:.3f}"))
        return verdicts
