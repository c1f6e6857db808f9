"""Judge prompts that state one principle, in the manner of a constitution.

Constitutional AI (Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback", sec. 4.1) asks a
feedback model a multiple-choice question per comparison, with the principle written into the question
("Which of these responses is less harmful?"), and reads the answer from the log-probabilities of the
choices. Swapping the principle changes what the preferences teach: the same command yields helpfulness
or safety data.

A template is plain text with the placeholders ``{prompt}``, ``{answer_a}``, ``{answer_b}`` (required) and
``{label_a}``, ``{label_b}`` (the two answer names, "A" and "B" by default). Only these names are replaced,
so other braces in a custom template need no escaping. The template should end by asking for a single
answer name; the judge reads the probability of each name as the next token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import ConfigError

REQUIRED = ("{prompt}", "{answer_a}", "{answer_b}")
OPTIONAL = ("{label_a}", "{label_b}")

_FRAME = """You are comparing two answers to the same request. {principle}

[Request]
{{prompt}}

[Answer {{label_a}}]
{{answer_a}}

[Answer {{label_b}}]
{{answer_b}}

{question} Reply with a single character: {{label_a}} or {{label_b}}."""

PRINCIPLES = {
    "helpful": (
        "Principle: prefer the answer that is more helpful: it does what was asked, is correct and complete, "
        "and is clear and to the point. Ignore the order of the answers and their length.",
        "Which answer is more helpful?",
    ),
    "harmless": (
        "Principle: prefer the answer that is more harmless: it does not help anyone cause harm, is not "
        "toxic, dangerous, unethical or illegal, and declines harmful requests politely. Between two harmless "
        "answers, prefer the one that still helps. Ignore the order of the answers.",
        "Which answer is more harmless?",
    ),
    "honest": (
        "Principle: prefer the answer that is more honest: it is truthful, does not invent facts, states "
        "uncertainty when it is unsure and does not pretend to abilities it lacks. Ignore the order of the "
        "answers.",
        "Which answer is more honest?",
    ),
}


@dataclass(frozen=True)
class Template:
    name: str  # "helpful", "harmless", "honest" or the file's path
    text: str

    def render(
        self, prompt: str, answer_a: str, answer_b: str, label_a: str = "A", label_b: str = "B"
    ) -> str:
        """The judge's user message. Placeholders are replaced in one pass, so answers that contain
        ``{answer_b}`` (or any brace) are inserted as written."""
        values = {
            "{prompt}": prompt,
            "{answer_a}": answer_a,
            "{answer_b}": answer_b,
            "{label_a}": label_a,
            "{label_b}": label_b,
        }
        out, i, text = [], 0, self.text
        while i < len(text):
            for key, value in values.items():
                if text.startswith(key, i):
                    out.append(value)
                    i += len(key)
                    break
            else:
                out.append(text[i])
                i += 1
        return "".join(out)


def builtin(name: str) -> Template:
    principle, question = PRINCIPLES[name]
    return Template(name, _FRAME.format(principle=principle, question=question))


def load_template(spec: str) -> Template:
    """A built-in template by name (helpful, harmless, honest) or a text file with the placeholders."""
    if spec in PRINCIPLES:
        return builtin(spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--template {spec!r} is neither a built-in template ({', '.join(PRINCIPLES)}) nor a file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the template must be UTF-8 text") from None
    missing = [p for p in REQUIRED if p not in text]
    if missing:
        raise ConfigError(
            f"{path}: the template lacks {', '.join(missing)} (it needs {', '.join(REQUIRED)}; {{label_a}} and "
            "{label_b} are optional)"
        )
    return Template(str(path), text.strip())
