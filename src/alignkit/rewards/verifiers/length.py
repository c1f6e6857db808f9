"""Length in a target band: 1.0 inside ``[min, max]``, falling linearly to 0 outside.

Keyword arguments (record columns, one value per completion, or one value for all):

- ``min`` (default `DEFAULT_MIN`), ``max`` (default `DEFAULT_MAX`): the band, inclusive.
- ``unit``: ``"words"`` (default; whitespace-separated) or ``"tokens"`` (the length of
  ``completion_ids``, which the trainer passes as TRL does).
- ``slack``: how far outside the band the reward reaches 0. Default: ``min`` below the band
  (an empty answer gets 0) and ``max`` above it (twice ``max`` gets 0). So with n the length::

      n < min:   max(0, 1 - (min - n) / slack_below)
      n > max:   max(0, 1 - (n - max) / slack_above)

  with min = 0 nothing is below the band.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.errors import ConfigError

DEFAULT_MIN = 20
DEFAULT_MAX = 200
UNITS = ("words", "tokens")


def length_reward(
    prompts: list[str] | None = None,
    completions: list[Any] | None = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Per completion, how well its length fits the band (see the module docstring)."""
    completions = list(completions or [])
    out: list[float | None] = []
    for i, completion in enumerate(completions):
        low = _number(kwargs, "min", i, DEFAULT_MIN)
        high = _number(kwargs, "max", i, DEFAULT_MAX)
        unit = str(_value(kwargs, "unit", i) or "words")
        if unit not in UNITS:
            raise ConfigError(f"length reward: unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if high < low:
            raise ConfigError(f"length reward: min ({low:g}) is above max ({high:g})")
        if unit == "tokens":
            if completion_ids is None:
                raise ConfigError(
                    "length reward in tokens needs completion_ids; use unit 'words' or pass them"
                )
            n = float(len(completion_ids[i]))
        else:
            n = float(len(_text(completion).split()))
        slack = _value(kwargs, "slack", i)
        out.append(band_score(n, low, high, None if slack is None else _number(kwargs, "slack", i, 0.0)))
    return out


def band_score(n: float, low: float, high: float, slack: float | None = None) -> float:
    """1.0 for ``low <= n <= high``; linear to 0 at ``slack`` outside (default: ``low`` below, ``high`` above)."""
    if n < low:
        reach = low if slack is None else slack
        return max(0.0, 1.0 - (low - n) / reach) if reach > 0 else 0.0
    if n > high:
        reach = high if slack is None else slack
        return max(0.0, 1.0 - (n - high) / reach) if reach > 0 else 0.0
    return 1.0


def _value(kwargs: dict[str, Any], name: str, i: int) -> Any:
    value = kwargs.get(name)
    return value[i] if isinstance(value, (list, tuple)) else value


def _number(kwargs: dict[str, Any], name: str, i: int, default: float) -> float:
    value = _value(kwargs, name, i)
    if value is None or value == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"length reward: {name} must be a number, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"length reward: {name} must be a finite number >= 0, got {value!r}")
    return number


def _text(completion: Any) -> str:
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


__all__ = ["DEFAULT_MAX", "DEFAULT_MIN", "UNITS", "band_score", "length_reward"]
