"""The statistics of a latency figure: stability of runs and the median's interval."""

from __future__ import annotations

import numpy as np
import pytest

from nbdeploy.bench.stats import is_stable, median_interval, spread


def test_stability_is_the_spread_of_the_last_window_of_run_medians() -> None:
    assert spread([1.0, 1.05]) == pytest.approx(0.05) and spread([2.0, 2.0]) == 0.0
    assert is_stable([3.0, 1.0, 1.02, 1.04], within=0.05, window=3)
    assert not is_stable([1.0, 1.02, 1.2], within=0.05, window=3)
    assert not is_stable([1.0, 1.0], within=0.05, window=3)  # too few runs to judge


def test_the_order_statistic_interval_of_one_run() -> None:
    calls = np.arange(1.0, 101.0)  # 1..100: the 95 % ranks of the median are 40 and 61
    assert median_interval([calls]) == (40.0, 61.0)
    assert median_interval([[5.0]]) == (5.0, 5.0)
    assert median_interval([[1.0, 2.0, 3.0]]) == (1.0, 3.0)


def test_drift_between_runs_widens_the_interval_and_it_is_reproducible() -> None:
    rng = np.random.default_rng(7)
    steady = [1.0 + rng.normal(0, 0.01, 500) for _ in range(5)]
    drifting = [run + shift for run, shift in zip(steady, [0, 0.1, 0.2, 0.1, 0], strict=True)]
    low, high = median_interval(steady)
    assert low < float(np.median(np.concatenate(steady))) < high and high - low < 0.01
    dlow, dhigh = median_interval(drifting)
    assert dhigh - dlow > 5 * (high - low)  # run-to-run drift, not only sampling
    assert median_interval(drifting) == (dlow, dhigh)  # seeded: the same calls, the same CI
