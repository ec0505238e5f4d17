"""The Pareto plot: axes fitted to the data, labels that do not overlap, a size legend."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.bench.rows import comparison, timed

pytest.importorskip("matplotlib")


def drawn(figure: Any) -> tuple[Any, Any]:
    """The axes and a renderer of a figure that has been drawn."""
    figure.canvas.draw()
    return figure.axes[0], figure.canvas.get_renderer()


def test_axes_fit_a_narrow_metric_and_intervals_are_drawn() -> None:
    rows = [timed("fp32", 3.1, 0.2, accuracy=97.4, size=864_000),
            timed("fp16", 2.9, 0.2, accuracy=97.3, size=432_000),
            timed("int8", 1.9, 0.1, accuracy=97.1, size=221_000)]  # fmt: skip
    axes, _ = drawn(comparison(*rows).plot())
    low, high = axes.get_ylim()
    assert 97.0 <= low < 97.1 and 97.4 < high <= 97.5  # not 94–106 %
    left, right = axes.get_xlim()
    assert 1.2 < left < 1.8 and 3.3 < right < 3.8  # the intervals (1.8–3.3 ms), with room
    assert axes.get_xscale() == "linear" and axes.get_title() == "accuracy vs latency, batch 1"
    assert len(axes.collections) >= 2  # markers and error bars


def test_equal_values_get_a_readable_span() -> None:
    axes, _ = drawn(
        comparison(timed("a", 1.0, accuracy=100.0), timed("b", 2.0, accuracy=100.0)).plot()
    )
    assert axes.get_ylim() == (99.5, 100.5)


def test_crowded_labels_do_not_overlap_each_other_or_the_markers() -> None:
    schemes = ["fp32", "fp16", "int8-dynamic", "int8-static", "kmeans-16",
               "int8-weight-symmetric", "int4", "opt"]  # fmt: skip
    rows = [
        timed(
            f"digits-cnn [{scheme}]",
            1.0 + 0.01 * i,
            0.02,
            accuracy=97.1 + 0.05 * (i % 3),
            size=100_000 * (i + 1),
        )
        for i, scheme in enumerate(schemes)
    ]
    figure = comparison(*rows).plot()
    axes, renderer = drawn(figure)
    labels = [t for t in axes.texts if t.get_text().startswith("digits-cnn")]
    assert sorted(t.get_text() for t in labels) == sorted(r.variant for r in rows)
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text, not its leader
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), "two labels overlap"
    centres = [axes.transData.transform((r.p50_ms, r.metric)) for r in rows]
    assert not any(box.contains(x, y) for box in boxes for x, y in centres)
    frame = axes.get_window_extent(renderer)
    assert all(frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1) for b in boxes)


def test_marker_sizes_have_a_legend_in_file_sizes() -> None:
    rows = [timed("fp32", 3.0, size=226_704_935), timed("int8", 2.0, size=56_700_000),
            timed("int4", 1.0, size=221_000)]  # fmt: skip
    figure = comparison(*rows).plot()
    titles = {legend.get_title().get_text(): legend for legend in figure.legends}
    assert set(titles) == {"provider", "model size"}
    sizes = [t.get_text() for t in titles["model size"].get_texts()]
    assert sizes == ["221 kB", "56.7 MB", "227 MB"]
    assert figure.axes[0].get_xscale() == "linear"
    wide = comparison(timed("fp32", 3.0), timed("int8", 0.3)).plot()
    assert wide.axes[0].get_xscale() == "log"  # latencies spanning more than 5×


def test_nothing_to_plot_is_an_empty_figure_without_warnings() -> None:
    figure = comparison(timed("fp32", 1.0, accuracy=None, top1_agreement=None)).plot()
    axes, _ = drawn(figure)
    assert not axes.texts and not figure.legends
