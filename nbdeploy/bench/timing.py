"""A timing harness in the manner of IPython's ``%timeit``, that repeats until stable.

Warm up, auto-range the loop count so each run lasts long enough to measure, then measure
runs until the medians of the last few runs agree within a few percent (perf_analyzer's
rule: its measurement windows are our runs), up to a maximum number of runs. Every call's
duration is kept, so p50/p95/p99 are real percentiles and the median comes with a
confidence interval (:mod:`nbdeploy.bench.stats` says how it is computed). When runs never
agreed, or the slowest was far slower than the fastest, the result says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from .stats import is_stable, median_interval, spread

__all__ = ["Timing", "time_call"]

_VARIES = 4.0  # slowest run this many times the fastest: warn, as %timeit does


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class Timing:
    """Durations of repeated calls, grouped in runs of ``loops`` calls.

    Attributes:
        calls: Every measured call's duration in seconds, in order.
        loops: Calls per run.
        runs: Runs.
        warmup: Calls made before measuring.
        stable_within: Runs agree when their medians are within this fraction (0.05 = 5 %).
        window: How many consecutive runs must agree.
        level: Coverage of :attr:`p50_interval` (0.95).
    """

    calls: tuple[float, ...]
    loops: int
    runs: int
    warmup: int
    stable_within: float = 0.05
    window: int = 3
    level: float = 0.95

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of call durations (seconds), 0 ≤ q ≤ 100."""
        ordered = sorted(self.calls)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        """Median call duration in seconds."""
        return self.percentile(50)

    @cached_property
    def p50_interval(self) -> tuple[float, float]:
        """``(low, high)``: a :attr:`level` confidence interval of :attr:`p50`, seconds."""
        low, high = median_interval(self._runs(), self.level)
        return min(low, self.p50), max(high, self.p50)

    @property
    def p95(self) -> float:
        """95th percentile, seconds."""
        return self.percentile(95)

    @property
    def p99(self) -> float:
        """99th percentile, seconds."""
        return self.percentile(99)

    @property
    def run_means(self) -> list[float]:
        """Mean call duration of each run."""
        return [statistics.fmean(run) for run in self._runs()]

    @property
    def run_medians(self) -> list[float]:
        """Median call duration of each run (what the stability rule compares)."""
        return [statistics.median(run) for run in self._runs()]

    @property
    def stable(self) -> bool:
        """Whether the last :attr:`window` runs' medians agree within :attr:`stable_within`."""
        return is_stable(self.run_medians, within=self.stable_within, window=self.window)

    @property
    def mean(self) -> float:
        """Mean call duration over all runs."""
        return statistics.fmean(self.calls)

    @property
    def stdev(self) -> float:
        """Standard deviation of the run means."""
        means = self.run_means
        return statistics.stdev(means) if len(means) > 1 else 0.0

    @property
    def warning(self) -> str | None:
        """A note when runs varied wildly or never agreed, else None."""
        notes = []
        means = self.run_means
        if len(means) > 1 and min(means) > 0 and max(means) / min(means) > _VARIES:
            notes.append(
                f"the slowest run took {max(means) / min(means):.1f} times longer than the "
                "fastest: the machine may be busy, or something is being cached."
            )
        if not self.stable:
            last = self.run_medians[-self.window :]
            notes.append(
                f"not stable: the last {len(last)} runs' medians differ by "
                f"{spread(last):.0%} (wanted {self.stable_within:.0%} over {self.window} runs "
                f"after {self.runs}); treat small differences as noise."
            )
        return " ".join(notes) or None

    def to_dict(self) -> dict[str, float | int | str | bool | None]:
        """A JSON-ready dict (seconds)."""
        low, high = self.p50_interval
        return {
            "p50": self.p50, "p50_low": low, "p50_high": high, "p95": self.p95,
            "p99": self.p99, "mean": self.mean, "stdev": self.stdev, "loops": self.loops,
            "runs": self.runs, "stable": self.stable, "warning": self.warning,
        }  # fmt: skip

    def __str__(self) -> str:
        low, high = self.p50_interval
        settled = "stable" if self.stable else "not stable"
        text = (
            f"{_fmt(self.mean)} ± {_fmt(self.stdev)} per call (p50 {_fmt(self.p50)}, "
            f"{self.level:.0%} CI {_fmt(low)}–{_fmt(high)}; p99 {_fmt(self.p99)}; "
            f"{self.runs} runs × {self.loops} loops, {settled})"
        )
        return text + (f"\nwarning: {self.warning}" if self.warning else "")

    def _repr_html_(self) -> str:
        from html import escape

        return f"<pre>{escape(str(self))}</pre>"

    def _runs(self) -> list[tuple[float, ...]]:
        step = max(1, self.loops)
        return [self.calls[i : i + step] for i in range(0, len(self.calls), step)]


def time_call(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeat: int = 5,
    min_run_time: float = 0.05,
    max_loops: int = 10_000,
    stable_within: float = 0.05,
    window: int = 3,
    max_runs: int = 10,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``fn()`` like ``%timeit``, measuring runs until their medians agree.

    Args:
        fn: The call to time (no arguments; close over them).
        warmup: Calls made and discarded first.
        repeat: Runs made at least.
        min_run_time: Auto-range the loop count until one run takes this long (s).
        max_loops: Upper bound of calls per run.
        stable_within: Accept once the last ``window`` runs' medians agree within this fraction.
        window: Consecutive runs that must agree (perf_analyzer uses 3).
        max_runs: Stop here even when runs never agreed (the result is marked unstable).
        clock: Seconds from an arbitrary origin (another clock makes the harness testable).
    """
    for _ in range(warmup):
        fn()
    loops = 1
    while loops < max_loops:
        started = clock()
        for _ in range(loops):
            fn()
        if clock() - started >= min_run_time:
            break
        # 1, 2, 5, 10, 20, 50, ... as timeit's autorange
        loops = min(max_loops, loops * 5 // 2 if str(loops)[0] == "2" else loops * 2)
    calls: list[float] = []
    medians: list[float] = []
    least = max(repeat, window)
    while len(medians) < max(least, max_runs):
        run = []
        for _ in range(loops):
            started = clock()
            fn()
            run.append(clock() - started)
        calls += run
        medians.append(statistics.median(run))
        if len(medians) >= least and is_stable(medians, within=stable_within, window=window):
            break
    return Timing(tuple(calls), loops, len(medians), warmup, stable_within, window)
