"""Built-in rule rewards with TRL's reward-function signature, chosen by name (``--reward-fn math``).

- ``math`` (`math.math_reward`): final-answer match against a record's ``answer`` /
  ``solution`` / ``reference`` column (GSM8K ``#### n``, MATH ``\\boxed{}``).
- ``length`` (`length.length_reward`): length inside a ``min``..``max`` band of words or tokens.
- ``ifeval`` (`ifeval.ifeval_reward`): the fraction of a record's IFEval instructions
  (``instruction_id_list`` + ``kwargs``) the completion follows, judged strictly.

`resolve_reward_fn` takes one of these names or a ``FILE.py:NAME`` / ``MODULE:NAME`` spec
(`alignkit.rewards.functions.load_reward_function`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alignkit.errors import ConfigError
from alignkit.rewards.ensemble import RewardMember, unique_names
from alignkit.rewards.functions import RewardFunction, function_member, load_reward_function
from alignkit.rewards.verifiers.ifeval import ifeval_reward
from alignkit.rewards.verifiers.length import length_reward
from alignkit.rewards.verifiers.math import math_reward


def builtin_reward_functions() -> dict[str, Callable[..., list[float | None]]]:
    """Built-in reward functions by name."""
    return {"math": math_reward, "length": length_reward, "ifeval": ifeval_reward}


def resolve_reward_fn(spec: str) -> RewardFunction:
    """A built-in's name, or ``FILE.py:NAME`` / ``MODULE:NAME`` → a `RewardFunction`."""
    text = spec.strip()
    builtins = builtin_reward_functions()
    if text in builtins:
        return RewardFunction(builtins[text], text, text)
    if ":" not in text:
        raise ConfigError(
            f"unknown reward function {spec!r}: use a built-in ({', '.join(builtins)}) "
            "or FILE.py:NAME / MODULE:NAME"
        )
    return load_reward_function(text)


def reward_function_members(
    specs: Sequence[str], weights: Sequence[float] | None = None
) -> list[RewardMember]:
    """`RewardSet` members from reward-function specs, named after the function (made unique), weight 1 each
    unless ``weights`` gives one per spec; pass them to `load_reward_set` as ``functions``."""
    if weights and len(weights) != len(specs):
        raise ConfigError(
            f"{len(weights)} reward-function weights for {len(specs)} functions: give one per function"
        )
    fns = [resolve_reward_fn(s) for s in specs]
    names = unique_names([f.name for f in fns])
    return [
        function_member(fn, float(weights[i]) if weights else 1.0, name)
        for i, (fn, name) in enumerate(zip(fns, names, strict=True))
    ]


__all__ = ["builtin_reward_functions", "resolve_reward_fn", "reward_function_members"]
