"""Per-version statistics, in Triton's shapes: the statistics endpoint's JSON (and, through
:mod:`.metrics`, the Prometheus metrics under Triton's names).

A :class:`VersionStats` counts what one worker process did (touched only on its event
loop) and keeps its recent latencies and the live view's windows; when it is given the
version's shared counters (:class:`.metrics.VersionCounters`) it counts there too, and the
server answers with the totals over every worker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics import VersionCounters

__all__ = ["Duration", "VersionStats", "Window"]


RECENT = 4096  # request durations kept for the latency summary's quantiles
QUANTILES = (0.5, 0.9, 0.95, 0.99)
SUMMARY = "nv_inference_request_summary_us"
WINDOW_S = 10  # the live view's resolution: one point per this many seconds
HISTORY_S = 300  # and how far back it reaches
_WINDOW_SAMPLES = 512  # durations kept per window for its quantiles


@dataclass
class Window:
    """Requests answered in one ``WINDOW_S``-second window: counts and latency samples."""

    start: int  # epoch seconds, a multiple of WINDOW_S
    requests: int = 0
    failures: int = 0
    durations_us: list[float] = field(default_factory=list)

    def add(self, ok: bool, us: float) -> None:
        self.requests += 1
        self.failures += not ok
        if len(self.durations_us) < _WINDOW_SAMPLES:
            self.durations_us.append(us)

    def to_dict(self) -> dict[str, Any]:
        """``{"t", "requests", "failures", "p50_ms", "p95_ms"}`` (``t``: epoch seconds)."""
        p50, p95 = _quantiles_ms(self.durations_us, (0.5, 0.95))
        return {"t": self.start, "requests": self.requests, "failures": self.failures,
                "p50_ms": p50, "p95_ms": p95}  # fmt: skip


@dataclass
class Duration:
    """How many times something happened and how long it took in total."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class VersionStats:
    """What one model version has done since it was loaded."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0  # batch items
    execution_count: int = 0  # runs (a batched run serves many requests)
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)
    recent_us: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    windows: deque[Window] = field(default_factory=lambda: deque(maxlen=HISTORY_S // WINDOW_S))
    loaded_at: float = field(default_factory=time.time)
    shared: VersionCounters | None = field(default=None, repr=False)

    def record_execution(self, batch: int, ns: int) -> None:
        """One model run over ``batch`` items."""
        self.execution_count += 1
        self.batches.setdefault(batch, Duration()).add(ns)
        if self.shared is not None:
            self.shared.execution(batch, ns)

    def record_queue(self, ns: int) -> None:
        """One request waited ``ns`` in the queue before its run started."""
        self.queue.add(ns)
        if self.shared is not None:
            self.shared.queued(ns)

    def record_compute(self, ns: int, requests: int) -> None:
        """One run of ``ns`` answered ``requests`` requests."""
        self.compute_infer.add(ns, requests)
        if self.shared is not None:
            self.shared.computed(ns, requests)

    def record_request(self, ok: bool, ns: int, items: int = 1) -> None:
        """One request answered (``ok``) or failed, ``ns`` after it arrived."""
        if self.shared is not None:
            self.shared.request(ok, ns, items)
        (self.success if ok else self.fail).add(ns)
        self.recent_us.append(ns / 1000)
        if ok:
            self.inference_count += items
        now = time.time()
        self.last_inference_ms = int(now * 1000)
        self._window(now).add(ok, ns / 1000)

    def _window(self, now: float) -> Window:
        start = int(now) // WINDOW_S * WINDOW_S
        if not self.windows or self.windows[-1].start != start:
            self.windows.append(Window(start))
        return self.windows[-1]

    def history(self, now: float | None = None) -> list[dict[str, Any]]:
        """The last ``HISTORY_S`` seconds, one entry per ``WINDOW_S``-second window that
        saw requests (oldest first)."""
        since = (now if now is not None else time.time()) - HISTORY_S
        return [w.to_dict() for w in self.windows if w.start + WINDOW_S > since]

    def rate(self, seconds: int = 60, now: float | None = None) -> float:
        """Requests per second over the last ``seconds`` (or since loading, if sooner)."""
        now = now if now is not None else time.time()
        span = max(1.0, min(float(seconds), now - self.loaded_at))
        count = sum(w.requests for w in self.windows if w.start + WINDOW_S > now - span)
        return round(count / span, 3)

    def with_counts(self, totals: VersionStats | None) -> VersionStats:
        """These recent latencies and windows with ``totals``' counts (every worker's),
        or this worker's own counts when there are none."""
        if totals is None:
            return self
        return replace(self, success=totals.success, fail=totals.fail, queue=totals.queue,
                       compute_infer=totals.compute_infer, batches=totals.batches,
                       inference_count=totals.inference_count,
                       execution_count=totals.execution_count,
                       last_inference_ms=totals.last_inference_ms)  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """This worker's recent latencies and windows, for another worker to merge."""
        return {"recent": list(self.recent_us),
                "windows": [[w.start, w.requests, w.failures, w.durations_us]
                            for w in self.windows]}  # fmt: skip

    def merged(self, snapshots: Sequence[dict[str, Any]]) -> VersionStats:
        """These statistics with other workers' recent latencies and windows added."""
        if not snapshots:
            return self
        recent = deque(self.recent_us, maxlen=RECENT * (1 + len(snapshots)))
        by_start = {w.start: Window(w.start, w.requests, w.failures, list(w.durations_us))
                    for w in self.windows}  # fmt: skip
        for snap in snapshots:
            recent.extend(snap["recent"])
            for start, requests, failures, durations in snap["windows"]:
                window = by_start.setdefault(start, Window(start))
                window.requests += requests
                window.failures += failures
                window.durations_us += durations[: _WINDOW_SAMPLES - len(window.durations_us)]
        windows = deque(sorted(by_start.values(), key=lambda w: w.start),
                        maxlen=HISTORY_S // WINDOW_S)  # fmt: skip
        return replace(self, recent_us=recent, windows=windows)

    def latency_us(self, quantiles: Sequence[float]) -> list[float | None]:
        """Request latency quantiles (µs) over the recent requests; ``None`` before any."""
        return _quantiles(self.recent_us, quantiles)

    def to_dict(self, name: str, version: str) -> dict[str, Any]:
        """Triton's ``model_stats`` entry."""
        zero = Duration().to_dict()
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_dict(),
                "fail": self.fail.to_dict(),
                "queue": self.queue.to_dict(),
                "compute_input": zero,
                "compute_infer": self.compute_infer.to_dict(),
                "compute_output": zero,
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [_batch(size, d) for size, d in sorted(self.batches.items())],
        }


def _quantiles(values: Iterable[float], quantiles: Sequence[float]) -> list[float | None]:
    import numpy as np

    array = np.fromiter(values, float)
    if not array.size:
        return [None] * len(quantiles)
    return [float(v) for v in np.quantile(array, quantiles)]


def _quantiles_ms(values_us: Iterable[float], quantiles: Sequence[float]) -> list[float | None]:
    return [None if us is None else round(us / 1000, 3) for us in _quantiles(values_us, quantiles)]


def _batch(size: int, compute: Duration) -> dict[str, Any]:
    zero = Duration().to_dict()
    return {"batch_size": size, "compute_input": zero, "compute_infer": compute.to_dict(),
            "compute_output": zero}  # fmt: skip
