"""Best-of-k for every k <= N from one best-of-N sample file, and the KL bound of best-of-k.

Notation: N candidates of one prompt, ranked ascending by the rerank key, x_(1) <= ... <= x_(N) their
values (the key itself, another reward model's score, or the length). Drawing k of the N without
replacement and keeping the best, the i-th ranked candidate wins exactly the subsets made of it and k - 1
of the i - 1 below it, so over all C(N, k) subsets

    E[x of the best of k] = sum_{i=k}^{N} x_(i) C(i-1, k-1) / C(N, k)

an unbiased estimate of best-of-k from the same policy that uses every candidate (the estimator behind
the best-of-n curves of Nakano et al. 2021, WebGPT, arXiv:2112.09332, and Gao et al. 2022,
arXiv:2210.10760; the derivation above is all it needs).
The weights of each k sum to 1 (hockey-stick identity). k = 1 gives the mean of all candidates, k = N
the winner.

The KL of best-of-k from the sampling policy is at most log k - (k - 1)/k nats (Stiennon et al. 2020,
arXiv:2009.01325, appendix; Gao et al. 2022, sec. 2; an upper bound: Beirami et al. 2024,
arXiv:2401.01879), computed for an array of k by `alignkit.losses.kl.best_of_n_kl_bound` (numpy only, no
torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def best_of_k_weights(n: int) -> np.ndarray:
    """(n, n) W with W[k-1, i-1] = C(i-1, k-1) / C(n, k): the chance that the i-th lowest of n wins a
    random k-subset (0 for i < k). Computed from log-factorials so that large n does not overflow."""
    if n < 1:
        raise ValueError(f"best-of-k needs n >= 1 candidates, got {n}")
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])

    def log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return log_fact[a] - log_fact[b] - log_fact[a - b]

    k = np.arange(1, n + 1)[:, None]  # (n, 1)
    i = np.arange(1, n + 1)[None, :]  # (1, n)
    valid = i >= k
    i_safe = np.where(valid, i, k)  # keep log_comb's arguments legal where the weight is 0
    log_w = log_comb(i_safe - 1, k - 1) - log_comb(np.full_like(k, n), k)
    return np.where(valid, np.exp(log_w), 0.0)


def rank_order(keys: Sequence[float], passed: Sequence[bool] | None = None) -> list[int]:
    """Candidate indices from worst to best under `alignkit sample`'s rerank rule: gate passers first
    (when gated), then the higher key; on a tie the earlier-sampled candidate wins, so it ranks higher."""
    gate = passed if passed is not None else [True] * len(keys)
    return sorted(range(len(keys)), key=lambda j: (bool(gate[j]), keys[j], -j))


def best_of_k_curve(
    values: Sequence[float], keys: Sequence[float] | None = None, passed: Sequence[bool] | None = None
) -> np.ndarray:
    """(N,) expected value of the best-of-k winner for k = 1..N, winners chosen by ``keys`` (default: the
    values themselves) and ``passed`` (the safety gate), over all k-subsets of the N candidates."""
    order = rank_order(values if keys is None else keys, passed)
    ranked = np.asarray([values[j] for j in order], dtype=np.float64)  # (N,) ascending by the key
    return best_of_k_weights(len(ranked)) @ ranked


def mean_curve(curves: Sequence[np.ndarray], n: int) -> np.ndarray:
    """(n,) mean over prompts of each prompt's curve up to k = n (a prompt with more candidates than n
    still gives unbiased values for k <= n)."""
    return np.mean(np.stack([c[:n] for c in curves]), axis=0)
