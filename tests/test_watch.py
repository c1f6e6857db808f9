"""Reward-hacking watch helpers: n-gram diversity, truncation, length drift, warnings."""

from __future__ import annotations

import pytest

from alignkit.watch import Watch, distinct_n, repetition_rate, truncated_fraction


def test_distinct_2_counts_unique_bigrams_over_the_batch():
    """[1,2,3] has bigrams (1,2),(2,3); [1,2,4] has (1,2),(2,4): 3 unique of 4 -> 0.75."""
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(0.75)
    assert distinct_n([[5, 5, 5, 5]], 2) == pytest.approx(1 / 3)  # (5,5) three times
    assert distinct_n([[1], []], 2) == 1.0  # no bigram at all: nothing repeats


def test_repetition_rate_is_within_response():
    """[7,8,9,7,8,9] has trigrams 789,897,978,789: one repeat of four -> 0.25; distinct -> 0."""
    assert repetition_rate([[7, 8, 9, 7, 8, 9]], 3) == pytest.approx(0.25)
    assert repetition_rate([[1, 2, 3, 4]], 3) == 0.0
    # the mean over responses, a short one counting 0
    assert repetition_rate([[7, 8, 9, 7, 8, 9], [1]], 3) == pytest.approx(0.125)


def test_truncated_fraction():
    assert truncated_fraction([True, False, False, True]) == 0.5
    assert truncated_fraction([]) == 0.0


def test_length_drift_against_first_rollout_and_warning():
    watch = Watch(kl_target=1.0, length_drift=0.5)
    m, w = watch.update(1, 0.1, [[1] * 10, [1] * 10], [True, True])
    assert m["gen/length"] == 10 and m["gen/length_drift"] == 0.0 and w == []
    m, w = watch.update(2, 0.1, [[1] * 14, [1] * 14], [True, False])
    assert m["gen/length_drift"] == pytest.approx(0.4) and w == []  # under 50%
    assert m["gen/truncated_frac"] == 0.5
    m, w = watch.update(3, 0.1, [[1] * 16, [1] * 16], [True, True])
    assert m["gen/length_drift"] == pytest.approx(0.6)
    assert len(w) == 1 and "+60%" in w[0]
    # shrinking by more than half warns too (after the condition clears once)
    watch.update(4, 0.1, [[1] * 10], [True])
    _, w = watch.update(5, 0.1, [[1] * 4], [True])
    assert len(w) == 1 and "-60%" in w[0]


def test_kl_warning_at_twice_target_not_repeated_every_step():
    watch = Watch(kl_target=2.0, repeat_every=3)
    _, w = watch.update(1, 3.9, [[1, 2]], [True])
    assert w == []  # under 2 x 2.0
    _, w = watch.update(2, 4.5, [[1, 2]], [True])
    assert len(w) == 1 and "KL" in w[0]
    _, w = watch.update(3, 4.5, [[1, 2]], [True])
    assert w == []  # still high, already warned
    _, w = watch.update(5, 4.5, [[1, 2]], [True])
    assert len(w) == 1  # repeated after repeat_every steps


def test_watch_state_round_trip():
    watch = Watch(kl_target=1.0)
    watch.update(1, 0.0, [[1] * 8], [True])
    clone = Watch(kl_target=1.0)
    clone.load_state_dict(watch.state_dict())
    assert clone.baseline_length == 8
    a, _ = watch.update(2, 0.0, [[1] * 12], [True])
    b, _ = clone.update(2, 0.0, [[1] * 12], [True])
    assert a == b and a["gen/length_drift"] == pytest.approx(0.5)
