"""The accuracy-vs-latency picture, with the Pareto front (matplotlib, no pyplot state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from .._deps import require

if TYPE_CHECKING:
    from .results import Comparison
    from .rows import ComparisonRow


class _Point(NamedTuple):
    """A row as drawn: p50 latency (x), the metric or agreement (y), marker size."""

    row: ComparisonRow
    latency: float
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


def pareto_figure(comparison: Comparison, *, batch_size: int | None = None) -> Any:
    """See :meth:`Comparison.plot`."""
    require("matplotlib", extra="lab", feature="Comparison.plot")
    from matplotlib.figure import Figure

    rows = [r for r in comparison.measured if batch_size is None or r.batch_size == batch_size]
    if batch_size is None and rows:
        rows = [r for r in rows if r.batch_size == rows[0].batch_size]
    use_metric = any(r.metric is not None for r in rows)
    y_key = comparison.metric if use_metric else "top1_agreement"
    plotted = _plotted(rows, use_metric)
    figure = _shown_inline(Figure)(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    largest = max((p.size_bytes for p in plotted), default=1)
    for provider in dict.fromkeys(p.row.provider for p in plotted):
        mine = [p for p in plotted if p.row.provider == provider]
        axes.scatter([p.latency for p in mine], [p.value for p in mine],
                     s=[40 + 400 * p.size_bytes / largest for p in mine], alpha=0.6,
                     label=provider)  # fmt: skip
    # Variants often land on one spot: stagger labels up and down in latency order.
    offsets = [(6, 4), (6, -10), (6, 16), (6, -22), (6, 28), (6, -34)]
    for k, p in enumerate(sorted(plotted, key=lambda p: (p.latency, p.value))):
        axes.annotate(p.row.variant, (p.latency, p.value), fontsize=8,
                      xytext=offsets[k % len(offsets)], textcoords="offset points")  # fmt: skip
    points = [(p.latency, p.value) for p in plotted]
    higher = comparison.higher_is_better or not use_metric
    front = pareto_front(points, higher)
    if front:
        axes.plot([points[i][0] for i in front], [points[i][1] for i in front], "--o",
                  color="gray", markerfacecolor="none", markersize=14,
                  label="Pareto front")  # fmt: skip
    latencies = [p[0] for p in points]
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 5:
        axes.set_xscale("log")
    axes.margins(x=0.25, y=0.15)
    axes.set_xlabel("p50 latency (ms)")
    axes.set_ylabel(f"{y_key} (%)" if y_key in ("accuracy", "top5", "top1_agreement") else y_key)
    axes.set_title("Accuracy vs latency (marker area: model size)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def _plotted(rows: list[ComparisonRow], use_metric: bool) -> list[_Point]:
    """The rows that have a value to plot: the metric, or else top-1 agreement."""
    points = []
    for row in rows:
        value = row.metric if use_metric else row.top1_agreement
        if value is not None and row.p50_ms is not None:
            points.append(_Point(row, row.p50_ms, value, row.size_bytes or 0))
    return points


def _shown_inline(figure_class: Any) -> Any:
    """A Figure that notebooks display as a PNG by itself: without pyplot, matplotlib's
    inline backend never registers its formatter, and a bare Figure shows as text."""

    class InlineFigure(figure_class):  # type: ignore[misc]
        def _repr_png_(self) -> bytes:
            import io

            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=110)
            return buffer.getvalue()

    return InlineFigure
