"""Help pages as flowing paragraphs: click's plain formatter, with words never broken at their hyphens.

Rich's help panels (typer's default) give an option's help a fifth of the width: at 80 columns that is
about 20 characters, so sentences fall apart into one- and two-word lines and long words are cut with an
ellipsis. The plain formatter puts the option names in one column (at most 30 wide) and wraps each help
text as one paragraph beside them (46 columns at 80), and re-flows every paragraph of a command's
description; blank lines separate paragraphs, an indented paragraph (an example) keeps its indent.

`HelpGroup` (the app's ``cls``) gives every command of the tree a context whose formatter is
`HelpFormatter`: click's, except that hyphens are glued while wrapping, so ``--reward-model`` or
``best-versus-worst`` never end a line at one of their hyphens, and neither does ``[default: 8]`` break
in two. A command's line in its group's list is the whole first sentence of its help, wrapped (click
would cut it at about 45 characters with "...").
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

from typer.core import TyperGroup

_Context: Any = TyperGroup.context_class  # click's Context, as typer ships it
# Private-use characters stand in for "-" and for the space of "[default: X]" while text is wrapped.
_HYPHEN, _SPACE = "\ue000", "\ue001"
_DEFAULT = re.compile(r"\[default: [^\]]*\]")


def _glue(text: str) -> str:
    text = _DEFAULT.sub(lambda m: m.group(0).replace(" ", _SPACE), text)
    return text.replace("-", _HYPHEN)


class HelpFormatter(_Context.formatter_class):  # type: ignore[misc,name-defined]
    """click's `HelpFormatter`, wrapping at spaces only (never after a hyphen)."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, _glue(args), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(_glue(_fit_blocks(text, self.width - self.current_indent)))

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(first, _glue(second)) for first, second in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(_HYPHEN, "-").replace(_SPACE, " ")


def _fit_blocks(text: str, width: int) -> str:
    """Paragraphs click would not wrap well, made to fit ``width``: a command example (an indented paragraph
    starting with ``alignkit``) becomes shell lines ending in `` \\`` (copy-pasteable; an option stays with
    its value), and each long line of a ``\\b`` (keep-as-is) block wraps with a hanging indent."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.split("\n")
        if lines[0].strip() == "\b":
            paragraph = "\n".join(lines[:1] + [piece for line in lines[1:] for piece in _hang(line, width)])
        elif all(line.startswith(" ") for line in lines) and lines[0].lstrip().startswith("alignkit "):
            indent = len(lines[0]) - len(lines[0].lstrip())
            paragraph = "\b\n" + _shell_lines(" ".join(line.strip() for line in lines), indent, width)
        paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def _wrapper(width: int, first: str, rest: str):
    import textwrap

    return textwrap.TextWrapper(
        width, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
    )


def _hang(line: str, width: int) -> list[str]:
    if len(line) <= width:
        return [line]
    lead = line[: len(line) - len(line.lstrip())]
    return _wrapper(width, lead, lead + "    ").wrap(line.strip())


def _shell_lines(command: str, indent: int, width: int) -> str:
    if indent + len(command) <= width:
        return " " * indent + command
    words = command.split()
    units: list[str] = []
    for word in words:  # "--output runs/rm" is one unit
        if units and units[-1].startswith("-") and " " not in units[-1] and not word.startswith("-"):
            units[-1] += _SPACE + word
        else:
            units.append(word)
    lines = _wrapper(width - 2, " " * indent, " " * (indent + 4)).wrap(" ".join(units))
    return " \\\n".join(lines).replace(_SPACE, " ")


class HelpContext(_Context):  # type: ignore[misc,valid-type]
    formatter_class = HelpFormatter


# `alignkit --help` lists the commands in the order of the work: data and labels, then the reward model and
# its uses, direct preference training, RL, evaluation and the rest. A command not named here comes last.
COMMAND_ORDER = (
    "demo", "data", "label", "judge", "rm", "score", "sample", "dpo", "kto", "sft", "ppo", "grpo", "rloo",
    "eval", "plot", "export", "models",
)  # fmt: skip


class HelpGroup(TyperGroup):
    """The root group: it and every command under it format their help with `HelpFormatter`; its commands
    are listed in `COMMAND_ORDER`."""

    context_class = HelpContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_help_context(self)

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), names.index(name)))


def _use_help_context(group: Any) -> None:
    for command in getattr(group, "commands", {}).values():
        command.context_class = HelpContext
        if not command.short_help and command.help:  # the first paragraph, whole
            command.short_help = " ".join(inspect.cleandoc(command.help).split("\n\n")[0].split())
        _use_help_context(command)
