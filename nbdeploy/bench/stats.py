"""The statistics behind a latency figure: when runs agree, and how well the median is known.

Stability follows Triton's perf_analyzer: measure in windows (our runs) and accept the
figure once the last ``window`` windows agree, i.e. the largest of their medians is at
most ``1 + within`` times the smallest (perf_analyzer: three windows, ``--stability-
percentage``); give up, and say so, after a maximum number of windows.

The interval of the median covers two sources of noise and takes the wider bound of each:

* Within runs, the distribution-free order-statistic interval of the median of all calls
  (ranks ``n/2 ∓ z·√n/2``, the normal approximation of the binomial; Conover, *Practical
  Nonparametric Statistics*, 3.2). It alone would claim too much: calls of one run are
  not independent, and the machine's state drifts between runs.
* Between runs, a cluster bootstrap: resample whole runs with replacement, take the median
  of the pooled calls, and read the percentile interval of those medians (Davison &
  Hinkley, *Bootstrap Methods*, 2.4). The generator is seeded, so a figure and its
  interval are reproducible from the same calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = ["is_stable", "median_interval", "spread"]

RESAMPLES = 1000
SEED = 0


def spread(medians: Sequence[float]) -> float:
    """How far apart run medians are: ``max / min - 1`` (0 when they agree exactly)."""
    low, high = min(medians), max(medians)
    if low <= 0:
        return 0.0 if high == low else math.inf
    return high / low - 1


def is_stable(medians: Sequence[float], *, within: float, window: int) -> bool:
    """Whether the last ``window`` run medians agree within ``within`` (0.05 = 5 %)."""
    return len(medians) >= window and spread(medians[-window:]) <= within


def median_interval(runs: Sequence[Sequence[float]], level: float = 0.95) -> tuple[float, float]:
    """A ``level`` confidence interval of the median of all calls (see the module doc).

    Args:
        runs: Call durations, one sequence per run.
        level: Coverage, e.g. 0.95.

    Returns:
        ``(low, high)`` in the units of the calls.
    """
    calls = np.sort(np.concatenate([np.asarray(r, np.float64) for r in runs]))
    low, high = _rank_interval(calls, level)
    if len(runs) > 1:
        between = _cluster_bootstrap(runs, level)
        low, high = min(low, between[0]), max(high, between[1])
    return low, high


def _rank_interval(ordered: np.ndarray, level: float) -> tuple[float, float]:
    n = len(ordered)
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(n) / 2
    lower = max(0, math.floor(n / 2 - half) - 1)  # 1-based rank floor(n/2 - half), 0-based
    upper = min(n - 1, math.ceil(n / 2 + half))  # 1-based rank ceil(1 + n/2 + half)
    return float(ordered[lower]), float(ordered[upper])


def _cluster_bootstrap(runs: Sequence[Sequence[float]], level: float) -> tuple[float, float]:
    """Percentile interval of the pooled median when whole runs are resampled.

    A resample repeats run ``i`` ``c_i`` times; its median is the first sorted call at which
    ``Σ c_i · (calls of run i so far)`` reaches half the pooled count, found for all
    resamples at once by bisection over the sorted calls.
    """
    k = len(runs)
    sizes = np.array([len(r) for r in runs])
    values = np.concatenate([np.asarray(r, np.float64) for r in runs])
    owner = np.repeat(np.arange(k), sizes)
    order = np.argsort(values, kind="stable")
    values, owner = values[order], owner[order]
    seen = np.cumsum(np.eye(k, dtype=np.int64)[owner], axis=0)  # [j, i]: run i in first j+1
    counts = np.random.default_rng(SEED).multinomial(k, [1 / k] * k, size=RESAMPLES)
    half = counts @ sizes / 2
    lo = np.zeros(RESAMPLES, np.int64)
    hi = np.full(RESAMPLES, len(values) - 1)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        reached = (seen[mid] * counts).sum(axis=1) >= half
        hi, lo = np.where(reached, mid, hi), np.where(reached, lo, mid + 1)
    medians = values[lo]
    tail = (1 - level) / 2
    return (float(np.quantile(medians, tail, method="lower")),
            float(np.quantile(medians, 1 - tail, method="higher")))  # fmt: skip
