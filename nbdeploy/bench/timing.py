"""A timing harness in the manner of IPython's ``%timeit``, with latency percentiles.

Warm up, auto-range the loop count so each run lasts long enough to measure, repeat,
and keep every call's duration so p50/p95/p99 are real percentiles. When the slowest
run is far slower than the fastest, say so: the machine was busy, or caches were cold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "time_call"]

_VARIES = 4.0  # slowest run this many times the fastest: warn, as %timeit does


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class Timing:
    """Durations of repeated calls.

    Attributes:
        calls: Every measured call's duration in seconds, in order.
        loops: Calls per run.
        runs: Runs.
        warmup: Calls made before measuring.
    """

    calls: tuple[float, ...]
    loops: int
    runs: int
    warmup: int

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of call durations (seconds), 0 ≤ q ≤ 100."""
        ordered = sorted(self.calls)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        """Median call duration in seconds."""
        return self.percentile(50)

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
        return [
            statistics.fmean(self.calls[i : i + self.loops])
            for i in range(0, len(self.calls), self.loops)
        ]

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
        """A note when runs varied wildly, else None."""
        means = self.run_means
        if len(means) > 1 and min(means) > 0 and max(means) / min(means) > _VARIES:
            return (
                f"the slowest run took {max(means) / min(means):.1f} times longer than the "
                "fastest: the machine may be busy, or something is being cached."
            )
        return None

    def to_dict(self) -> dict[str, float | int | str | None]:
        """A JSON-ready dict (seconds)."""
        return {
            "p50": self.p50, "p95": self.p95, "p99": self.p99, "mean": self.mean,
            "stdev": self.stdev, "loops": self.loops, "runs": self.runs, "warning": self.warning,
        }  # fmt: skip

    def __str__(self) -> str:
        text = (
            f"{_fmt(self.mean)} ± {_fmt(self.stdev)} per call (p50 {_fmt(self.p50)}, "
            f"p99 {_fmt(self.p99)}; {self.runs} runs × {self.loops} loops)"
        )
        return text + (f"\nwarning: {self.warning}" if self.warning else "")

    def _repr_html_(self) -> str:
        from html import escape

        return f"<pre>{escape(str(self))}</pre>"


def time_call(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeat: int = 5,
    min_run_time: float = 0.05,
    max_loops: int = 10_000,
) -> Timing:
    """Time ``fn()`` like ``%timeit``: warm-up, auto-ranged loops, repeated runs.

    Args:
        fn: The call to time (no arguments; close over them).
        warmup: Calls made and discarded first.
        repeat: Number of runs.
        min_run_time: Auto-range the loop count until one run takes this long (s).
        max_loops: Upper bound of calls per run.
    """
    for _ in range(warmup):
        fn()
    loops = 1
    while loops < max_loops:
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        if time.perf_counter() - started >= min_run_time:
            break
        # 1, 2, 5, 10, 20, 50, ... as timeit's autorange
        loops = min(max_loops, loops * 5 // 2 if str(loops)[0] == "2" else loops * 2)
    calls: list[float] = []
    clock = time.perf_counter
    for _ in range(repeat):
        for _ in range(loops):
            started = clock()
            fn()
            calls.append(clock() - started)
    return Timing(tuple(calls), loops, repeat, warmup)
