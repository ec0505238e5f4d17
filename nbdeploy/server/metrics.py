"""Counters shared by every worker process of one server, kept by prometheus-client.

Each worker counts into prometheus-client's metrics; in multiprocess mode (the server
sets ``PROMETHEUS_MULTIPROC_DIR`` before its workers start) each process writes its
values to files in that folder and any worker reads the sums, so ``/metrics`` and
``/v2/models/stats`` are exact totals whichever worker answers. Without that folder (a
dataplane inside a test) the values live in this process.

The counters are nbdeploy's own (``nbdeploy_stats_*``, never exported as such): one set
feeds both Triton's statistics JSON and Triton's metrics, which :func:`triton_metrics`
writes under Triton's names and labels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .stats import QUANTILES, SUMMARY, Duration, VersionStats

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge
    from prometheus_client.metrics_core import Metric

__all__ = ["SharedCounters", "VersionCounters", "multiprocess_folder", "triton_metrics"]

# "load": which load of the version (a reload starts its counts again, as on Triton)
LABELS = ("model", "version", "load")
# nbdeploy's counter -> the VersionStats field it sums into ("field.part" for Durations)
_COUNTERS = {
    "nbdeploy_stats_success": "success.count", "nbdeploy_stats_success_ns": "success.ns",
    "nbdeploy_stats_failure": "fail.count", "nbdeploy_stats_failure_ns": "fail.ns",
    "nbdeploy_stats_queue": "queue.count", "nbdeploy_stats_queue_ns": "queue.ns",
    "nbdeploy_stats_compute_infer": "compute_infer.count",
    "nbdeploy_stats_compute_infer_ns": "compute_infer.ns",
    "nbdeploy_stats_inference_count": "inference_count",
    "nbdeploy_stats_execution_count": "execution_count",
}  # fmt: skip
_BATCH_RUNS, _BATCH_NS = "nbdeploy_stats_batch_runs", "nbdeploy_stats_batch_ns"
_LAST = "nbdeploy_stats_last_inference_ms"


def multiprocess_folder() -> str | None:
    """The folder worker processes share their counters through, if this is a server."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class VersionCounters:
    """The shared counters of one model version (prometheus-client's labelled children,
    looked up once, not per request)."""

    def __init__(self, counters: SharedCounters, model: str, version: str, load: str) -> None:
        self._labels = (model, version, load)
        self._children = {name: c.labels(*self._labels) for name, c in counters.counters.items()}
        self._batch_runs = counters.batch_runs
        self._batch_ns = counters.batch_ns
        self._by_batch: dict[int, tuple[Counter, Counter]] = {}
        self._last = counters.last.labels(*self._labels)

    def request(self, ok: bool, ns: int, items: int) -> None:
        """One request answered (``ok``) or failed, ``ns`` after it arrived."""
        prefix = "nbdeploy_stats_success" if ok else "nbdeploy_stats_failure"
        self._children[prefix].inc()
        self._children[prefix + "_ns"].inc(ns)
        if ok:
            self._children["nbdeploy_stats_inference_count"].inc(items)
        self._last.set(_now_ms())

    def execution(self, batch: int, ns: int) -> None:
        """One model run over ``batch`` items."""
        self._children["nbdeploy_stats_execution_count"].inc()
        runs, total = self._by_batch.get(batch) or self._batch(batch)
        runs.inc()
        total.inc(ns)

    def queued(self, ns: int) -> None:
        self._children["nbdeploy_stats_queue"].inc()
        self._children["nbdeploy_stats_queue_ns"].inc(ns)

    def computed(self, ns: int, requests: int) -> None:
        self._children["nbdeploy_stats_compute_infer"].inc(requests)
        self._children["nbdeploy_stats_compute_infer_ns"].inc(ns)

    def _batch(self, batch: int) -> tuple[Counter, Counter]:
        pair = (self._batch_runs.labels(*self._labels, str(batch)),
                self._batch_ns.labels(*self._labels, str(batch)))  # fmt: skip
        self._by_batch[batch] = pair
        return pair


class SharedCounters:
    """Every version's counters, and their totals over all worker processes."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self.counters: dict[str, Counter] = {
            name: Counter(name, name, LABELS, registry=self.registry) for name in _COUNTERS
        }
        batch_labels = (*LABELS, "batch_size")
        self.batch_runs = Counter(_BATCH_RUNS, _BATCH_RUNS, batch_labels, registry=self.registry)
        self.batch_ns = Counter(_BATCH_NS, _BATCH_NS, batch_labels, registry=self.registry)
        self.last: Gauge = Gauge(_LAST, _LAST, LABELS, registry=self.registry,
                                 multiprocess_mode="max")  # fmt: skip

    def version(self, model: str, version: str, load: str) -> VersionCounters:
        return VersionCounters(self, model, version, load)

    def totals(self) -> dict[tuple[str, str, str], VersionStats]:
        """Every load of every version: counts summed over the workers (as
        :class:`VersionStats` holding counts only), by (model, version, load)."""
        totals: dict[tuple[str, str, str], VersionStats] = {}
        for metric in self._collect():
            for sample in metric.samples:
                if not sample.name.endswith(("_total", _LAST)):
                    continue  # "_created" samples (a single process) say nothing here
                labels = sample.labels
                key = (labels["model"], labels["version"], labels["load"])
                _add(totals.setdefault(key, VersionStats()), metric.name, sample.labels,
                     int(sample.value))  # fmt: skip
        return totals

    def _collect(self) -> Iterable[Metric]:
        folder = multiprocess_folder()
        if folder is None:
            return self.registry.collect()
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        metrics: Iterable[Metric] = MultiProcessCollector(CollectorRegistry(), folder).collect()
        return metrics


def _add(stats: VersionStats, metric: str, labels: dict[str, str], value: int) -> None:
    if metric == _LAST:
        stats.last_inference_ms = max(stats.last_inference_ms, value)
    elif metric in (_BATCH_RUNS, _BATCH_NS):
        batch = stats.batches.setdefault(int(labels["batch_size"]), Duration())
        batch.add(value if metric == _BATCH_NS else 0, value if metric == _BATCH_RUNS else 0)
    elif metric in _COUNTERS:
        field, _, part = _COUNTERS[metric].partition(".")
        if part:
            setattr(getattr(stats, field), part, value)
        else:
            setattr(stats, field, value)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


# Triton's metric name -> (help, how to read it from a version's totals).
_TRITON: dict[str, tuple[str, Callable[[VersionStats], int]]] = {
    "nv_inference_request_success": (
        "Number of successful inference requests, all batch sizes", lambda s: s.success.count),
    "nv_inference_request_failure": (
        "Number of failed inference requests, all batch sizes", lambda s: s.fail.count),
    "nv_inference_count": (
        "Number of inferences performed (does not include cached requests)",
        lambda s: s.inference_count),
    "nv_inference_exec_count": (
        "Number of model executions performed (does not include cached requests)",
        lambda s: s.execution_count),
    "nv_inference_request_duration_us": (
        "Cumulative inference request duration in microseconds (includes cached requests)",
        lambda s: (s.success.ns + s.fail.ns) // 1000),
    "nv_inference_queue_duration_us": (
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        lambda s: s.queue.ns // 1000),
    "nv_inference_compute_infer_duration_us": (
        "Cumulative compute inference duration in microseconds (does not include cached "
        "requests)", lambda s: s.compute_infer.ns // 1000),
}  # fmt: skip


def triton_metrics(rows: Iterable[tuple[str, str, VersionStats]]) -> str:
    """Prometheus text exactly as Triton writes it (``# TYPE nv_... counter`` with no
    ``_total`` suffix, which prometheus-client's own exposition always adds), labelled by
    model and version; the summary's quantiles cover the recent requests the rows carry."""
    rows = list(rows)
    lines = []
    for name, (doc, read) in _TRITON.items():
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} counter"]
        lines += [f"{name}{{{_labels(model, version)}}} {read(stats)}"
                  for model, version, stats in rows]  # fmt: skip
    lines += _summary(rows)
    return "\n".join(lines) + "\n"


def _summary(rows: list[tuple[str, str, VersionStats]]) -> list[str]:
    """Request latency quantiles over the recent requests, as Triton's summary (which it
    exports with ``--metrics-config summary_latencies=true``)."""
    lines = [f"# HELP {SUMMARY} Summary of inference request duration in microseconds",
             f"# TYPE {SUMMARY} summary"]  # fmt: skip
    for model, version, stats in rows:
        labels = _labels(model, version)
        for q, value in zip(QUANTILES, stats.latency_us(QUANTILES), strict=True):
            shown = float("nan") if value is None else value
            lines.append(f'{SUMMARY}{{{labels},quantile="{q}"}} {shown:.1f}')
        total = stats.success.count + stats.fail.count
        lines.append(f"{SUMMARY}_count{{{labels}}} {total}")
        lines.append(f"{SUMMARY}_sum{{{labels}}} {(stats.success.ns + stats.fail.ns) / 1000:.1f}")
    return lines


def _labels(model: str, version: str) -> str:
    return f'model="{_escape(model)}",version="{_escape(version)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
