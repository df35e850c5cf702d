"""gleamx.eval.stats' paired difference and run-to-run interval, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from gleamx.eval.stats import mean_t_interval, paired_bootstrap_diff


def test_mean_t_interval_matches_scipys_t_interval():
    values = [0.97, 0.98, 0.93, 0.655, 0.5, 0.97]
    got = mean_t_interval(values)
    lo, hi = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((lo, hi))


def test_mean_t_interval_of_one_run_has_no_interval_and_refuses_nan():
    one = mean_t_interval([0.5])
    assert one["n"] == 1 and np.isnan(one["ci_low"]) and np.isnan(one["ci_high"])
    with pytest.raises(ValueError, match="finite"):
        mean_t_interval([0.5, float("nan")])


def test_paired_bootstrap_diff_equals_a_hand_bootstrap_with_the_same_seed():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2, 300)
    b = np.where(rng.random(300) < 0.2, 1 - a, a)  # b flips a fifth of a's outcomes
    got = paired_bootstrap_diff(a, b, n_resamples=500, seed=3)
    d = b - a
    idx = np.random.default_rng(3).integers(0, d.size, size=(500, d.size))
    means = d[idx].mean(1)
    assert got["diff"] == pytest.approx(d.mean())
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((np.percentile(means, 2.5), np.percentile(means, 97.5)))
    assert got["n"] == 300


def test_paired_interval_is_narrower_than_the_unpaired_one_when_the_systems_share_their_errors():
    """The reason to pair: two systems that agree on most samples differ by little, and pairing sees it."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 400)
    b = a.copy()
    b[:8] = 1  # b fixes up to 8 of a's errors
    paired = paired_bootstrap_diff(a, b, seed=0)
    unpaired_half = 1.96 * np.sqrt(a.var() / a.size + b.var() / b.size)
    assert paired["ci_high"] - paired["ci_low"] < unpaired_half
    assert paired["ci_low"] >= 0.0


def test_paired_bootstrap_diff_refuses_unpaired_lists():
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap_diff([1, 0, 1], [1, 0])
