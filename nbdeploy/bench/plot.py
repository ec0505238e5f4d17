"""The accuracy-vs-latency picture, with the Pareto front (matplotlib, no pyplot state).

Latency is the median with its 95 % interval as a horizontal bar; marker area is the
model's size, with a legend of sizes; axes fit the data (a metric spanning 97.1–97.4 %
is drawn over that span, not 94–106 %); labels are placed so they do not overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .._deps import require
from .labels import place_labels
from .units import bytes_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .results import Comparison
    from .rows import ComparisonRow

_PERCENT = ("accuracy", "top5", "top1_agreement")


class _Point(NamedTuple):
    """A row as drawn: p50 latency (x) and its interval, the metric or agreement (y)."""

    row: ComparisonRow
    latency: float
    low: float
    high: float
    value: float
    size_bytes: int


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of points no other point beats on both latency (x, lower) and metric (y)."""
    sign = 1 if higher_is_better else -1
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and sign * oy >= sign * y) and (ox < x or sign * oy > sign * y)
            for j, (ox, oy) in enumerate(points) if j != i
        )  # fmt: skip
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def marker_area(size_bytes: float, largest: float) -> float:
    """Marker area (points²) for a model of ``size_bytes`` when the largest is ``largest``."""
    return 40 + 400 * size_bytes / max(largest, 1)


def pareto_figure(comparison: Comparison, *, batch_size: int | None = None) -> Any:
    """See :meth:`Comparison.plot`."""
    require("matplotlib", extra="lab", feature="Comparison.plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = [r for r in comparison.measured if batch_size is None or r.batch_size == batch_size]
    if batch_size is None and rows:
        rows = [r for r in rows if r.batch_size == rows[0].batch_size]
    use_metric = any(r.metric is not None for r in rows)
    y_key = comparison.metric if use_metric else "top1_agreement"
    plotted = _plotted(rows, use_metric)
    figure = _inline_figure()(figsize=(8, 4.5), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    largest = max((p.size_bytes for p in plotted), default=1)
    for k, provider in enumerate(dict.fromkeys(p.row.provider for p in plotted)):
        mine, color = [p for p in plotted if p.row.provider == provider], f"C{k}"
        axes.scatter([p.latency for p in mine], [p.value for p in mine], alpha=0.6,
                            s=[marker_area(p.size_bytes, largest) for p in mine],
                            color=color, label=provider, zorder=3)  # fmt: skip
        spread = [[p.latency - p.low for p in mine], [p.high - p.latency for p in mine]]
        axes.errorbar([p.latency for p in mine], [p.value for p in mine], xerr=spread,
                      fmt="none", ecolor=color, elinewidth=1, capsize=3,
                      zorder=2)  # fmt: skip
    points = [(p.latency, p.value) for p in plotted]
    front = pareto_front(points, comparison.higher_is_better or not use_metric)
    if front:
        axes.plot([points[i][0] for i in front], [points[i][1] for i in front], "--",
                  color="gray", lw=1, label="Pareto front", zorder=1)  # fmt: skip
    _fit_axes(axes, plotted, y_key in _PERCENT)
    axes.set_xlabel("p50 latency (ms), bars: 95% interval")
    axes.set_ylabel(f"{y_key} (%)" if y_key in _PERCENT else y_key)
    batch = f", batch {plotted[0].row.batch_size}" if plotted else ""
    axes.set_title(f"{y_key} vs latency{batch}")
    axes.grid(alpha=0.3)
    if plotted:  # a legend of nothing would only warn
        figure.legend(loc="outside right upper", fontsize=8, title="provider")
        _size_legend(figure, axes, [p.size_bytes for p in plotted])
    figure.draw_without_rendering()  # lay out first: labels are placed on screen
    renderer: Callable[[], Any] = canvas.get_renderer  # untyped in matplotlib's stubs
    radii = [math.sqrt(marker_area(p.size_bytes, largest)) / 2 for p in plotted]
    bars = [(p.low, p.high, p.value) for p in plotted]
    place_labels(axes, renderer(), points, [p.row.variant for p in plotted], radii, bars=bars)
    return figure


def _fit_axes(axes: Any, plotted: list[_Point], percent: bool) -> None:
    """Limits around the data: a quarter of the span on each side, a fixed pad when every
    value is equal, a log latency axis when latencies span more than 5×."""
    if not plotted:
        return
    values = [p.value for p in plotted]
    low, high = min(values), max(values)
    pad = 0.25 * (high - low) if high > low else (0.5 if percent else abs(high) * 0.05 or 1.0)
    axes.set_ylim(low - pad, high + pad)
    left, right = min(p.low for p in plotted), max(p.high for p in plotted)
    if left > 0 and right / left > 5:
        axes.set_xscale("log")
        axes.set_xlim(left / 1.5, right * 1.5)
    else:
        span = right - left if right > left else abs(right) * 0.2 or 1.0
        axes.set_xlim(max(0.0, left - 0.3 * span), right + 0.3 * span)


def _size_legend(figure: Any, axes: Any, sizes: list[int]) -> None:
    """Marker sizes for the smallest, middle and largest model, outside the axes."""
    largest = max(sizes)
    shown = sorted({min(sizes), sorted(sizes)[len(sizes) // 2], largest})
    handles = [axes.scatter([], [], s=marker_area(s, largest), color="0.6", alpha=0.6)
               for s in shown]  # fmt: skip
    figure.legend(handles, [bytes_text(s) for s in shown], loc="outside right lower",
                  fontsize=8, title="model size", labelspacing=1.2, borderpad=0.9)  # fmt: skip


def _plotted(rows: list[ComparisonRow], use_metric: bool) -> list[_Point]:
    """The rows that have a value to plot: the metric, or else top-1 agreement."""
    points = []
    for row in rows:
        value = row.metric if use_metric else row.top1_agreement
        interval = row.p50_interval_ms
        if value is not None and row.p50_ms is not None and interval is not None:
            points.append(_Point(row, row.p50_ms, *interval, value, row.size_bytes or 0))
    return points


def _inline_figure() -> type[Figure]:
    """A Figure that notebooks display as a PNG by itself: without pyplot, matplotlib's
    inline backend never registers its formatter, and a bare Figure shows as text."""
    from matplotlib.figure import Figure

    class InlineFigure(Figure):
        def _repr_png_(self) -> bytes:
            import io

            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=110)
            return buffer.getvalue()

    return InlineFigure
