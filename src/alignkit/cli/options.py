"""Command-line options generated from config dataclasses, so each option is defined once.

`config_command(RMConfig)` turns every field of the dataclass into a typer
option (``max_steps`` -> ``--max-steps``, booleans -> ``--lora/--no-lora``,
lists -> repeatable options), with the field's docstring as its help, plus
``--config recipe.yaml`` and ``--quiet``. Options default to ``None`` ("not
given") so that `build_config` can layer recipe < flags. Fields named in
``positional`` become arguments (a list field: any number of them), shown as
the field's ``metadata["metavar"]`` when it has one.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alignkit import console
from alignkit.config import build_config, field_help

# Short flags kept stable across commands.
SHORT = {"output": "-o", "model": "-m"}


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _default_text(f) -> str | None:
    if f.default is not MISSING:
        d = f.default
        if isinstance(d, bool):
            return None  # the flag pair shows it
        return None if d is None or d == "" else str(d)
    return None


def option_parameters(
    cls: type, skip: tuple[str, ...] = (), positional: tuple[str, ...] = ()
) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    params: list[inspect.Parameter] = []
    for f in fields(cls):
        if f.name in skip:
            continue
        tp = _unwrap_optional(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = field_help(cls, f.name)
        default = _default_text(f)
        if default is not None:
            help_text = f"{help_text} [default: {default}]"
        if f.name in positional:  # a list field takes any number of values: `alignkit plot RUN...`
            info = typer.Argument(help=help_text, show_default=False, metavar=f.metadata.get("metavar"))
        elif tp is bool:
            names = [f"{flag}/--no-{flag[2:]}"]
            info = typer.Option(*names, help=help_text, show_default=False)
        else:
            names = [flag] + ([SHORT[f.name]] if f.name in SHORT else [])
            info = typer.Option(*names, help=help_text, show_default=False)
        origin = typing.get_origin(tp)
        if origin in (list, tuple):
            inner = (typing.get_args(tp) or (str,))[0]
            annotation = Annotated[Optional[list[inner]], info]  # noqa: UP045 (typer needs Optional)
        else:
            annotation = Annotated[Optional[tp], info]  # noqa: UP045
        if f.name in positional:  # required argument
            annotation = Annotated[tp, info]
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if f.name in positional else None,
                annotation=annotation,
            )
        )
    return params


RECIPE_PARAM = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--config", "-c", help="Recipe YAML giving defaults (see recipes/); flags override it."),
    ],
)
QUIET_PARAM = inspect.Parameter(
    "quiet",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or info lines on stderr.")
    ],
)


def config_command(
    cls: type, positional: tuple[str, ...] = ()
) -> Callable[[Callable[[Any], Any]], Callable[..., Any]]:
    """Decorate ``fn(cfg)`` so typer sees one option per config field (+ --config, --quiet)."""

    def decorate(fn: Callable[[Any], Any]) -> Callable[..., Any]:
        params = option_parameters(cls, positional=positional)
        # typer wants positional arguments first
        params.sort(key=lambda p: p.name not in positional)
        params = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params]
        params += [
            RECIPE_PARAM.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD),
            QUIET_PARAM.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            recipe = kwargs.pop("config", None)
            console.set_quiet(bool(kwargs.pop("quiet", False)))
            cfg = build_config(cls, recipe, kwargs)
            return fn(cfg)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must see the generated signature, not fn's
        return wrapper

    return decorate
