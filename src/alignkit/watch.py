"""Reward-hacking watch: cheap signs that a policy is gaming its reward model.

A policy optimised against a learned reward drifts towards what the reward model
over-rates (Gao et al. 2023, "Scaling Laws for Reward Model Overoptimization",
arXiv:2210.10760): responses grow longer (Singhal et al. 2023, "A Long Way to Go",
arXiv:2310.03716), repeat themselves, stop ending, and move far from the
reference policy. These helpers measure each sign per rollout; :class:`Watch`
keeps the first rollouts as the baseline and says when to warn:

- the KL to the reference passes ``kl_factor`` (2) x its target;
- the mean response length moves by more than ``length_drift`` (50%) from the baseline.

Every function here is pure: token lists in, floats out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams of one sequence, in order (empty when it is shorter than n)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(sequences: Sequence[Sequence[int]], n: int = 2) -> float:
    """Distinct-n over a batch (Li et al. 2016, arXiv:1510.03055): unique n-grams / all n-grams.

    1.0 means no n-gram occurs twice anywhere in the batch; a collapse to one
    repeated phrase drives it towards 0. A batch without any n-gram gives 1.0
    (nothing is repeated).
    """
    total = 0
    unique: set[tuple[int, ...]] = set()
    for seq in sequences:
        grams = ngrams(seq, n)
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 1.0


def repetition_rate(sequences: Sequence[Sequence[int]], n: int = 3) -> float:
    """Mean over responses of the fraction of a response's n-grams that repeat an earlier one in it.

    Within-response repetition ("the the the", a sentence looped): 0 for a response
    with all n-grams distinct, near 1 for one phrase repeated. Responses shorter than
    n count as 0.
    """
    rates = []
    for seq in sequences:
        grams = ngrams(seq, n)
        rates.append(1.0 - len(set(grams)) / len(grams) if grams else 0.0)
    return sum(rates) / len(rates) if rates else 0.0


def truncated_fraction(finished: Sequence[bool]) -> float:
    """Fraction of responses that hit the length limit without emitting EOS."""
    return sum(1 for f in finished if not f) / len(finished) if len(finished) else 0.0


def mean_length(lengths: Sequence[int]) -> float:
    return sum(lengths) / len(lengths) if len(lengths) else 0.0


@dataclass
class Watch:
    """Tracks the drift signs across PPO steps and decides when to warn.

    ``baseline_length`` is the mean response length of the first ``baseline_steps``
    rollouts (the policy before it has moved much). Warnings fire when a condition
    starts and again every ``repeat_every`` steps while it lasts, so a long run is not
    flooded. The state is checkpointed with the run (:meth:`state_dict`).
    """

    kl_target: float
    kl_factor: float = 2.0
    length_drift: float = 0.5
    baseline_steps: int = 1
    repeat_every: int = 20
    kl_advice: str = (
        "Raise --kl-coef or use --adaptive-kl"  # what to do about it (the trainer knows its options)
    )
    baseline_length: float | None = None
    _baseline_sum: float = 0.0
    _baseline_seen: int = 0
    _active: dict[str, int] = field(default_factory=dict)  # condition -> step it last warned at

    def update(
        self,
        step: int,
        kl: float,
        response_tokens: Sequence[Sequence[int]],
        finished: Sequence[bool],
    ) -> tuple[dict[str, float], list[str]]:
        """Metrics of one rollout and the warnings to print.

        Args:
            step: the PPO step (1-based).
            kl: mean per-response KL to the reference, in nats.
            response_tokens: B response token lists (EOS excluded).
            finished: B flags, True when the response emitted EOS.

        Returns:
            metrics: ``gen/length``, ``gen/length_drift``, ``gen/truncated_frac``,
            ``gen/distinct_2``, ``gen/repetition_3``; warnings: messages (may be empty).
        """
        lengths = [len(t) for t in response_tokens]
        length = mean_length(lengths)
        if self._baseline_seen < self.baseline_steps:
            self._baseline_sum += length
            self._baseline_seen += 1
            self.baseline_length = self._baseline_sum / self._baseline_seen
        base = self.baseline_length or 0.0
        drift = (length / base - 1.0) if base > 0 else 0.0
        metrics = {
            "gen/length": length,
            "gen/length_drift": drift,
            "gen/truncated_frac": truncated_fraction(finished),
            "gen/distinct_2": distinct_n(response_tokens, 2),
            "gen/repetition_3": repetition_rate(response_tokens, 3),
        }
        warnings = []
        kl_limit = self.kl_factor * self.kl_target
        if self._fire("kl", step, kl > kl_limit):
            warnings.append(
                f"step {step}: KL to the reference is {kl:.2f} nats, over {self.kl_factor:g}x its target "
                f"({self.kl_target:g}); the policy may be exploiting the reward model. {self.kl_advice}"
            )
        drifted = self._baseline_seen >= self.baseline_steps and abs(drift) > self.length_drift
        if self._fire("length", step, drifted):
            warnings.append(
                f"step {step}: mean response length {length:.1f} tokens has drifted {drift:+.0%} from the first "
                f"rollouts' {base:.1f}; a reward model that likes length is being gamed (check gen/length)"
            )
        return metrics, warnings

    def _fire(self, name: str, step: int, condition: bool) -> bool:
        if not condition:
            self._active.pop(name, None)
            return False
        last = self._active.get(name)
        if last is None or step - last >= self.repeat_every:
            self._active[name] = step
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "baseline_length": self.baseline_length,
            "baseline_sum": self._baseline_sum,
            "baseline_seen": self._baseline_seen,
            "active": dict(self._active),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline_length = state.get("baseline_length")
        self._baseline_sum = float(state.get("baseline_sum", 0.0))
        self._baseline_seen = int(state.get("baseline_seen", 0))
        self._active = {str(k): int(v) for k, v in state.get("active", {}).items()}


__all__ = ["Watch", "distinct_n", "mean_length", "ngrams", "repetition_rate", "truncated_fraction"]
