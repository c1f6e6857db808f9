"""Reward functions: plain Python functions as a reward source, with TRL's signature.

A reward function takes a batch and returns one reward per completion (TRL 1.16's
``GRPOTrainer._calculate_rewards`` contract)::

    def reward(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]

It is always called with keywords (``prompts=..., completions=...``), as TRL does, so a
function that names only ``completions`` and ``**kwargs`` works unchanged.

- ``prompts``: the prompt of each completion as plain text (the last user message of a
  conversation), repeated for every answer to the same prompt.
- ``completions``: each answer as plain text (its assistant messages).
- every other column of the prompt record (`Record.meta`, i.e. what the loader kept
  besides the prompt) as a keyword list, one value per completion (`record_columns`);
  ``completion_ids`` (token ids of each completion) and ``trainer_state`` when the caller
  has them. TRL's ``log_extra``, ``log_metric`` and ``environments`` are not passed.
- the result: a list (or tuple) of B floats, ints, bools or None; NaN counts as None
  ("no reward for this completion", e.g. no reference answer). Anything else is a
  `ConfigError` naming the function and the value; an exception inside the function
  becomes a `RewardFunctionError` naming the function, the completion and the exception.

Functions are loaded from a spec (`load_reward_function`): ``path/to/file.py:name`` or
``package.module:name``. `RewardFunctionScorer` makes one a member of a
`alignkit.rewards.ensemble.RewardSet`.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import itertools
import math
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from alignkit.data.records import Conversation, Record
from alignkit.errors import ConfigError, UserError
from alignkit.rewards.ensemble import RewardMember

# Keywords the caller sets itself: a record column with one of these names is not passed.
RESERVED = ("prompts", "completions", "prompt", "completion", "completion_ids", "trainer_state")
SPEC_HINT = "give FILE.py:NAME or MODULE:NAME"
_loaded = itertools.count(1)


class RewardFunctionError(RuntimeError):
    """A reward function raised: an internal failure of the run (exit status 1), not bad input."""


# ------------------------------------------------------------------------------------------ loading


def load_reward_function(spec: str) -> RewardFunction:
    """``path/to/file.py:name`` or ``package.module:name`` → a `RewardFunction`.

    A file is imported under a unique module name (two files both called ``rewards.py``
    do not collide); ``name`` may be dotted (``Class.method``). Every failure is a
    one-line `ConfigError` naming the spec.
    """
    where, sep, attr = spec.strip().rpartition(":")
    if not sep or not where or not attr:
        raise ConfigError(f"reward function {spec!r} must look like FILE.py:NAME or MODULE:NAME")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(spec, Path(where).expanduser())
    else:
        module = _import(spec, lambda: importlib.import_module(where))
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"reward function {spec!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"reward function {spec!r}: {attr!r} is a {type(obj).__name__}, not callable")
    return RewardFunction(obj, attr.rpartition(".")[2], spec)


def _import_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"reward function {spec!r}: no such file {str(path)!r}")
    name = f"alignkit_reward_fn_{next(_loaded)}_{''.join(c if c.isalnum() else '_' for c in path.stem)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"reward function {spec!r}: {str(path)!r} is not a Python file; {SPEC_HINT}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name

    def run() -> Any:
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module

    try:
        return _import(spec, run)
    except ConfigError:
        sys.modules.pop(name, None)
        raise


def _import(spec: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except (Exception, SystemExit) as e:
        raise ConfigError(f"reward function {spec!r}: import failed: {one_line(e)}") from e


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# ------------------------------------------------------------------------------------------ text and columns


def prompt_text(prompt: Conversation | str) -> str:
    """A prompt as TRL's standard-format text: the last user message (else the last message)."""
    if isinstance(prompt, str):
        return prompt
    users = [m.content for m in prompt if m.role == "user"]
    return users[-1] if users else (prompt[-1].content if prompt else "")


def completion_text(answer: Conversation | str) -> str:
    """An answer as plain text: its assistant messages (all messages when it has none)."""
    if isinstance(answer, str):
        return answer
    said = [m.content for m in answer if m.role == "assistant"] or [m.content for m in answer]
    return "\n\n".join(said)


def record_columns(records: Sequence[Record], repeats: int | Sequence[int] = 1) -> dict[str, list[Any]]:
    """Every ``meta`` column of the prompt records as keyword lists, one value per completion.

    ``repeats``: how many completions each record has (one number for all, or one per
    record), in order; each value is repeated that many times, as TRL repeats the inputs
    per generation. A record without a column gets None; `RESERVED` names are left out.
    """
    counts = [repeats] * len(records) if isinstance(repeats, int) else list(repeats)
    if len(counts) != len(records):
        raise ValueError(f"{len(counts)} repeat counts for {len(records)} records")
    keys = dict.fromkeys(k for r in records for k in r.meta if k not in RESERVED)
    return {k: [r.meta.get(k) for r, n in zip(records, counts, strict=True) for _ in range(n)] for k in keys}


# ------------------------------------------------------------------------------------------ calling


@dataclass
class RewardFunction:
    """A reward function with its name, called and checked as the module docstring says."""

    fn: Callable[..., Any]
    name: str
    spec: str = ""  # where it came from (the spec, or a built-in's name)

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any
    ) -> list[float | None]:
        prompts, completions = list(prompts), list(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        try:
            result = self._run(prompts, completions, kwargs)
        except UserError:
            raise
        except Exception as e:
            raise self._failure(prompts, completions, kwargs, e) from e
        return self.check(result, len(completions))

    def _run(self, prompts: list[str], completions: list[str], kwargs: dict[str, Any]) -> Any:
        result = self.fn(prompts=prompts, completions=completions, **kwargs)
        return asyncio.run(result) if inspect.iscoroutine(result) else result  # TRL allows async functions

    def _failure(self, prompts, completions, kwargs, error: Exception) -> RewardFunctionError:
        """Name the first completion that fails alone with the same kind of exception, else the batch.

        The batch is retried row by row (so a function with side effects sees those rows again).
        """
        index = 0 if len(completions) == 1 else None
        for i in range(len(completions) if len(completions) > 1 else 0):
            row = {k: v[i : i + 1] if _per_row(v, len(completions)) else v for k, v in kwargs.items()}
            try:
                self._run(prompts[i : i + 1], completions[i : i + 1], row)
            except Exception as e:
                if type(e) is type(error):
                    index, error = i, e
                break
        where = f"the batch of {len(completions)} completions"
        if index is not None:
            where = f"completion {index} ({completions[index][:80]!r})"
        return RewardFunctionError(f"reward function {self.name!r} failed on {where}: {one_line(error)}")

    def check(self, result: Any, expected: int) -> list[float | None]:
        """The function's result as B floats or None; a `ConfigError` naming the bad value."""
        if hasattr(result, "tolist") and not isinstance(result, (list, tuple)):  # numpy, torch
            result = result.tolist()
        if not isinstance(result, (list, tuple)):
            raise ConfigError(
                f"reward function {self.name!r} must return a list of floats (or None), "
                f"got {type(result).__name__}: {str(result)[:80]!r}"
            )
        if len(result) != expected:
            raise ConfigError(
                f"reward function {self.name!r} returned {len(result)} rewards for {expected} completions; "
                "return one reward (or None) per completion"
            )
        out: list[float | None] = []
        for i, value in enumerate(result):
            value = _scalar(value)
            if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
                out.append(None)
            elif isinstance(value, numbers.Real) and math.isfinite(value):
                out.append(float(value))
            else:
                raise ConfigError(
                    f"reward function {self.name!r} returned {str(value)[:80]!r} ({type(value).__name__}) "
                    f"for completion {i}; return a finite float, an int, a bool or None"
                )
        return out


def _scalar(value: Any) -> Any:
    """A numpy scalar or one-element tensor as a Python number; anything else unchanged."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "item"):
        return value
    try:
        return value.item()
    except (ValueError, RuntimeError, TypeError):
        return value


def _per_row(value: Any, rows: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == rows


# ------------------------------------------------------------------------------------------ the ensemble


@dataclass
class RewardFunctionScorer:
    """A `RewardFunction` as a `RewardSet` member (the text interface of `FunctionScorer`).

    ``score_text`` returns (B,) float32 with NaN where the function returned None; a
    `RewardSet` then makes that completion's combined reward NaN ("no reward"), whatever
    the rule (sum, min or gate). ``columns`` are the keyword lists (`record_columns`,
    ``completion_ids``, ``trainer_state``) that `RewardSet.score` passes on.
    """

    fn: RewardFunction
    tokenizer: Any = None  # text only
    takes_columns: bool = True  # RewardSet.score passes its ``columns`` to score_text
    abstains: bool = True  # may return NaN (None): the combined reward is then NaN

    def score_text(
        self,
        prompts: Sequence[Conversation | str],
        responses: Sequence[Conversation | str],
        columns: Mapping[str, Any] | None = None,
    ) -> Tensor:
        rewards = self.fn(
            [prompt_text(p) for p in prompts], [completion_text(r) for r in responses], **dict(columns or {})
        )
        return torch.tensor([math.nan if r is None else r for r in rewards], dtype=torch.float32)


def function_member(fn: RewardFunction, weight: float = 1.0, name: str | None = None) -> RewardMember:
    """A `RewardMember` (metric ``reward/<name>``) scoring with ``fn``, weighted like a reward model."""
    return RewardMember(name or fn.name, RewardFunctionScorer(fn), float(weight))


__all__ = [
    "RESERVED",
    "RewardFunction",
    "RewardFunctionError",
    "RewardFunctionScorer",
    "completion_text",
    "function_member",
    "load_reward_function",
    "one_line",
    "prompt_text",
    "record_columns",
]
