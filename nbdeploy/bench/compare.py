"""``nbd.compare``: accuracy × latency × size of every variant on every device."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._feed import as_feed, batch_size
from .._progress import steps
from ..artifact import Artifact
from ..errors import ConfigError
from . import metrics as metrics_mod
from . import placement as placement_mod
from .drift import annotate, drifts
from .placement import Placement
from .providers import (
    kernel_events,
    onnxruntime_errors,
    provider_name,
    session_for,
    unavailable_reason,
)
from .results import Comparison
from .rows import ComparisonRow
from .scoring import predict_all, split_data
from .slowdown import explain
from .source import Source, is_source
from .timing import Timing, time_call

__all__ = ["compare"]
log = logging.getLogger(__name__)
Variant = Artifact | Source


def compare(
    variants: Sequence[Artifact | Any],
    *,
    data: tuple[Any, Any] | Any = None,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    providers: Sequence[str] = ("cpu",),
    batch_sizes: Sequence[int] = (1,),
    warmup: int = 3,
    repeat: int = 5,
    stable_within: float = 0.05,
    max_runs: int = 10,
    progress: bool = True,
    on_row: Callable[[ComparisonRow], None] | None = None,
    cancel: threading.Event | None = None,
) -> Comparison:
    """Measure every variant on every provider: metric, agreement, latency, size, memory.

    Args:
        variants: Artifacts to compare; the first is the reference for agreement. The
            model they were exported from (a ``torch.nn.Module``, a Keras model) may be
            one of them too: it runs in its own framework on the same inputs, as the row
            ``<name> [torch eager]`` / ``[keras]`` — first, it is the reference the
            exports are held to. It is measured, never chosen (it cannot be served).
        data: ``(X, y)`` to score the metric on, or just ``X`` (agreement and latency
            only); ``None`` uses the first variant's example.
        metric: ``"accuracy"`` or ``"top5"`` (percent), ``"mse"``, ``"mae"``, or any
            ``(y_true, y_pred) -> float``.
        providers: ``"cpu"``, ``"cuda"``, ``"tensorrt"``, ``"openvino"``, ``"dml"``; one
            that is not in this onnxruntime build is reported as skipped, with the reason
            and how to get it. Each measured row says where its nodes ran
            (``row.placement``: ``"OpenVINO 12/12 in 1 subgraph"``). ``"openvino"`` needs
            the ``onnxruntime-openvino`` wheel, which replaces the ``onnxruntime`` module:
            install it in a virtualenv of its own, or compare there from this one with
            :func:`nbdeploy.bench.elsewhere.compare_in` (nbdeploy's tests build such a
            virtualenv with :func:`nbdeploy.bench.openvino_venv.prepare`).
        batch_sizes: Batch sizes to time.
        warmup: Calls before timing.
        repeat: Timed runs at least (each auto-ranged, as ``%timeit``).
        stable_within: Time each row until the medians of its last three runs agree
            within this fraction (perf_analyzer's stability rule), up to ``max_runs`` runs.
        max_runs: Most runs per row; a row that never settled says so in its note.
        progress: ``False`` for silence; otherwise a line naming the variant being
            measured appears once the comparison has run a second.
        on_row: Called with each :class:`~nbdeploy.bench.rows.ComparisonRow` as soon as
            it is measured (live tables).
        cancel: When this event is set, stop before the next measurement.

    Returns:
        A :class:`~nbdeploy.bench.results.Comparison` (table, plot, ``choice``, reports).
        A row clearly slower than the first artifact's on its provider and batch size
        says why in its note: the operator whose kernel time grew most, from
        onnxruntime's profiler (e.g. ``ConvInteger ×3 takes 84% of its kernel time``).
        A variant whose outputs differ from the first artifact's names in its note the
        node where it drifts most (:func:`nbdeploy.activations`, for models up to
        64 MB); ``.activations(label)`` gives the whole report.
        Ctrl-C or ``cancel`` stops early and returns the rows measured so far, marked
        partial.
    """
    measured = _variants(variants)
    for name in providers:
        provider_name(name)  # unknown names fail before any work
    chosen = metrics_mod.resolve(metric)
    x, y = split_data(data, next(v for v in measured if isinstance(v, Artifact)))
    loaded: dict[tuple[int, str], _Loaded] = {}  # one session and one scoring per pair
    recorded: dict[tuple[str, str], Placement] = {}  # onnxruntime's, by variant and provider

    def load(art: Variant, provider: str) -> _Loaded:
        key = (id(art), provider)
        if key not in loaded:
            loaded[key] = _Loaded.of(art, provider, x)
            if (where := loaded[key].placement) is not None:
                recorded[art.variant, provider] = where
        return loaded[key]

    reference = load(measured[0], "cpu").predicted
    grid = [(v, p, b) for v in measured for p in providers for b in batch_sizes]
    rows: list[ComparisonRow] = []
    timer = partial(time_call, warmup=warmup, repeat=repeat, stable_within=stable_within,
                    max_runs=max_runs)  # fmt: skip
    stopped = False
    names = [f"{a.variant} on {p} at batch {b}" for a, p, b in grid]
    try:
        with steps("compare", names, enabled=progress) as job:
            for (art, provider, batch), name in zip(grid, names, strict=True):
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
                job.step(name)
                rows.append(_row(art, provider, batch, load, x, y, reference, chosen, timer))
                if on_row is not None:
                    on_row(rows[-1])
    except KeyboardInterrupt:
        log.warning("compare interrupted: returning the %d rows measured so far", len(rows))
        stopped = True
    by_label = {v.variant: v for v in measured if isinstance(v, Artifact)}
    rows = placement_mod.complete_rows(rows, recorded)
    reports = {}
    if not stopped:  # a row slower than the first artifact's says where its time went,
        rows = explain(rows, by_label, lambda _, batch: _batch_feed(x, batch))
        reports = drifts(rows, by_label, x)  # one that answers differently, where it drifts
        rows = annotate(rows, reports)
    return Comparison(rows, chosen.name, chosen.higher_is_better, partial=stopped,
                      variants=by_label, activations=reports)  # fmt: skip


def _variants(variants: Sequence[Artifact | Any]) -> list[Variant]:
    """The variants, a source model among them fed like the first artifact."""
    artifacts = [v for v in variants if isinstance(v, Artifact)]
    if not artifacts:
        raise ConfigError(
            "compare needs at least one artifact (nbd.export(model, example)); a source "
            "model is measured next to the artifacts exported from it."
        )
    return [Source.of(v, artifacts[0]) if is_source(v) else v for v in variants]


@dataclass(frozen=True)
class _Loaded:
    """A variant's session on one provider, its predictions on the data, and the memory
    that loading and scoring took."""

    session: Any
    predicted: np.ndarray
    memory_mb: float
    placement: Placement | None

    @classmethod
    def of(cls, art: Variant, provider: str, x: dict[str, np.ndarray]) -> _Loaded:
        rss = _rss()
        session = art.session(provider) if isinstance(art, Source) else session_for(art, provider)
        predicted = predict_all(list(art.inputs), x, session)
        memory = max(0.0, (_rss() - rss) / 2**20)
        where = None if isinstance(art, Source) else placement_mod.from_session(session, provider)
        return cls(session, predicted, memory, where)


def _batch_feed(x: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    size = batch_size(x)
    reps = -(-batch // size)
    return {k: np.concatenate([v] * reps)[:batch] if v.ndim else v for k, v in x.items()}


def _row(
    art: Variant,
    provider: str,
    batch: int,
    load: Callable[[Variant, str], _Loaded],
    x: dict[str, np.ndarray],
    y: np.ndarray | None,
    reference: np.ndarray,
    metric: metrics_mod.Metric,
    timer: Callable[[Callable[[], object]], Timing],
) -> ComparisonRow:
    """One table row: skipped with the reason, or measured."""
    row = ComparisonRow(variant=art.variant, provider=provider, batch_size=batch,
                        metric_name=metric.name, source=isinstance(art, Source))  # fmt: skip
    if isinstance(art, Source):
        reason = art.unavailable_reason(provider)
    else:
        reason = unavailable_reason(provider)
    if reason is not None:
        return replace(row, skipped=reason)
    try:
        loaded = load(art, provider)
    except onnxruntime_errors() as err:  # e.g. a provider that breaks on one graph
        first_line = str(err).strip().splitlines()[0]
        log.warning("%s on %s: %s", art.variant, provider, first_line)
        return replace(row, skipped=f"onnxruntime could not run {art.variant} on {provider}: "
                                    f"{first_line}")  # fmt: skip
    max_abs_diff, top1_agreement = _agreement(loaded.predicted, reference)
    row = replace(row, metric=metric.fn(y, loaded.predicted) if y is not None else None,
                  max_abs_diff=max_abs_diff, top1_agreement=top1_agreement)  # fmt: skip
    return _measure(row, art, loaded, x, timer)


def _measure(
    row: ComparisonRow,
    art: Variant,
    loaded: _Loaded,
    x: dict[str, np.ndarray],
    timer: Callable[[Callable[[], object]], Timing],
) -> ComparisonRow:
    """``row`` with the latency (median with its interval), throughput, size and memory
    of its variant on its provider at its batch size."""
    feed = as_feed(_batch_feed(x, row.batch_size), art.inputs)
    session = loaded.session
    timing = timer(lambda: session.run(None, feed))
    where = _placement(art, row.provider, loaded, feed)
    low, high = timing.p50_interval
    measured = replace(
        row, p50_ms=timing.p50 * 1e3, p50_low_ms=low * 1e3, p50_high_ms=high * 1e3,
        stable=timing.stable, p95_ms=timing.p95 * 1e3, p99_ms=timing.p99 * 1e3,
        throughput=row.batch_size / timing.mean, size_bytes=art.size_bytes,
        memory_mb=loaded.memory_mb,
        note=placement_mod.fallback_note(row.provider, where) + (timing.warning or ""),
    )  # fmt: skip
    return placement_mod.placed(measured, where)


def _agreement(predicted: np.ndarray, reference: np.ndarray) -> tuple[float, float | None]:
    """The largest absolute difference from the reference, and the percent of equal top-1
    predictions (class scores only, else ``None``)."""
    max_abs_diff = float(np.abs(predicted.astype(np.float64) - reference).max())
    if predicted.ndim > 1 and predicted.dtype.kind == "f":
        return max_abs_diff, float(np.mean(predicted.argmax(-1) == reference.argmax(-1)) * 100)
    return max_abs_diff, None


def _placement(
    art: Variant, provider: str, loaded: _Loaded, feed: dict[str, np.ndarray]
) -> Placement | None:
    """Where the timed session put the nodes; an onnxruntime older than 1.24 keeps no
    record, and then one profiled run counts them on a provider other than the CPU."""
    if loaded.placement is not None or not isinstance(art, Artifact) or provider == "cpu":
        return loaded.placement
    return placement_mod.from_profile(provider, kernel_events(art, provider, feed))


def _rss() -> int:
    """Resident set size of this process in bytes (Linux), 0 where unknown."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    import resource

    return pages * resource.getpagesize()
