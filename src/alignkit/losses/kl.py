"""KL to the reference policy: per-token estimators, the KL coefficient's controllers, best-of-n's bound.

Notation: π the policy being trained, ρ the frozen reference policy (the SFT model),
logp_t = log π(y_t | x, y_<t) on (B, T) tensors, β the KL coefficient (``kl_coef``).
The RLHF reward pays r(x, y) - β log(π(y|x) / ρ(y|x)) (Ziegler et al. 2019, sec. 2.2;
Stiennon et al. 2020, sec. 3.4): :func:`kl_penalty` estimates the log-ratio per token,
:class:`FixedKLController` and :class:`AdaptiveKLController` set β. Best-of-n sampling
has no β; its KL from the sampling policy is bounded by :func:`best_of_n_kl_bound`.

Nothing here imports torch: the estimators use tensor methods only, and the bound is
plain ``math`` / numpy (the plots use it without loading torch).
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "best_of_n_kl_bound",
    "kl_penalty",
]

KL_ESTIMATORS = ("k1", "k2", "k3", "abs")


def kl_penalty(logps: Tensor, ref_logps: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token estimate of KL(π || ρ) for tokens sampled from π.

    With log-ratio d = logp - ref_logp and r = ρ/π = exp(-d) (Schulman 2020,
    "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html)::

        k1  = d = -log r                 unbiased, high variance, can be negative
        k2  = d² / 2 = (log r)² / 2      biased, low variance, >= 0
        k3  = (r - 1) - log r            unbiased, low variance, >= 0 (since e^x >= 1 + x)
        abs = |d|

    k1 is the penalty of Ziegler et al. 2019 (sec. 2.2) and Stiennon et al. 2020
    (eq. 2). k3 uses ``expm1`` for accuracy near d = 0; it overflows to inf for
    ref_logp - logp above ~88 in float32.

    Args:
        logps: (B, T) log π of the sampled tokens.
        ref_logps: (B, T) log ρ of the same tokens.
        estimator: one of ``KL_ESTIMATORS``.

    Returns:
        (B, T) estimate per token; not masked.
    """
    d = logps - ref_logps
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return (-d).expm1() + d
    if estimator == "abs":
        return d.abs()
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")


class FixedKLController:
    """A constant KL coefficient β. Same interface as :class:`AdaptiveKLController`."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient is fixed."""

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional controller that steers the policy's KL to the reference towards a target.

    Ziegler et al. 2019, sec. 2.2 (the log-space proportional controller; OpenAI
    lm-human-preferences' ``AdaptiveKLController``)::

        e    = clip(KL / KL_target - 1, -0.2, 0.2)
        β   ← β · (1 + e · n_steps / horizon)

    KL above target raises β (pulls the policy back), below target lowers it. The
    clip bounds the change per update to ±0.2 · n_steps / horizon.

    Args:
        init_kl_coef: starting β.
        target: KL_target in nats per sequence (the KL you pass to :meth:`update`).
        horizon: number of samples (episodes) over which a full error would change β by e.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | Tensor, n_steps: int) -> None:
        """Adapt β after a batch of ``n_steps`` samples whose mean KL was ``current_kl``."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = float(state["horizon"])


def best_of_n_kl_bound(n: int | np.ndarray | Sequence[int]) -> float | np.ndarray:
    """``log n - (n - 1) / n`` nats: the analytic KL of best-of-n from the base policy (an upper bound).

    Stiennon et al. 2020 (arXiv:2009.01325, appendix) and Gao et al. 2022 (arXiv:2210.10760,
    sec. 2) give ``KL_bon = log n - (n - 1) / n``; Beirami et al. 2024 (arXiv:2401.01879,
    thm. 3.1) show it is an upper bound, tight when the n candidates are almost surely
    distinct (long answers); with repeated answers the true KL is smaller.

    n = 1 gives 0 (the policy itself); it grows like log n: 0.636 at 4, 1.835 at 16, 3.175 at 64.

    Args:
        n: an int, or an array-like of ints (e.g. every k of a best-of-k curve).

    Returns:
        a float for an int; for an array-like, an ndarray of float64 of the same shape.

    Raises:
        ValueError: for n < 1 (an int).
    """
    if isinstance(n, numbers.Integral):
        if n < 1:
            raise ValueError(f"best-of-n needs n >= 1, got {n}")
        return math.log(n) - (n - 1) / n
    k = np.asarray(n, dtype=np.float64)
    return np.log(k) - (k - 1.0) / k
