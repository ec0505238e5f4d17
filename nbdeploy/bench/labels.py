"""Point labels that do not overlap: a small, deterministic placement for scatter plots.

Each label tries positions around its point — right, left, above, below, then the
diagonals — on rings further and further out, and takes the first whose box on screen
touches no marker, no error bar and no label placed before it (points in latency order). Where every
position collides, the one with the least overlap wins; labels away from their point get
a thin leader line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["place_labels"]

# (dx, dy) unit directions and the alignment that keeps the text on that side.
_DIRECTIONS = [
    ((1, 0), "left", "center"), ((-1, 0), "right", "center"),
    ((0, 1), "center", "bottom"), ((0, -1), "center", "top"),
    ((1, 1), "left", "bottom"), ((1, -1), "left", "top"),
    ((-1, 1), "right", "bottom"), ((-1, -1), "right", "top"),
]  # fmt: skip
_RINGS = (3.0, 12.0, 24.0, 38.0)  # points beyond the marker's edge


def place_labels(
    axes: Any,
    renderer: Any,
    points: Sequence[tuple[float, float]],
    texts: Sequence[str],
    radii: Sequence[float],
    *,
    bars: Sequence[tuple[float, float, float]] = (),
    fontsize: float = 8,
) -> list[Any]:
    """Annotate ``points`` (data coordinates) with ``texts`` without overlaps.

    Args:
        axes: The matplotlib Axes, already laid out (call ``draw_without_rendering`` first).
        renderer: A renderer to measure text with (``figure.canvas.get_renderer()``).
        points: Where each label belongs.
        texts: The labels.
        radii: Each point's marker radius in points (labels start beyond it).
        bars: Horizontal error bars ``(low, high, y)`` in data coordinates, also avoided.
        fontsize: Label size in points.

    Returns:
        The annotations, in the order of ``points``.
    """
    scale = axes.figure.dpi / 72
    screen = [axes.transData.transform(p) for p in points]
    taken = [_box(x, y, r * scale) for (x, y), r in zip(screen, radii, strict=True)]
    for low, high, y in bars:
        (x0, y0), (x1, _) = axes.transData.transform([(low, y), (high, y)])
        taken.append((x0, y0 - 3 * scale, x1, y0 + 3 * scale))
    frame = axes.bbox
    placed: list[Any] = [None] * len(points)
    for i in sorted(range(len(points)), key=lambda k: (points[k][0], points[k][1], k)):
        best: tuple[float, Any] | None = None
        for ring, ((dx, dy), ha, va) in ((r, d) for r in _RINGS for d in _DIRECTIONS):
            offset = (radii[i] + ring) / math.hypot(dx, dy)
            lead = {"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 1,
                    "shrinkB": radii[i]} if ring > _RINGS[0] else None  # fmt: skip
            label = axes.annotate(
                texts[i], points[i], xytext=(dx * offset, dy * offset),
                textcoords="offset points", ha=ha, va=va, fontsize=fontsize,
                annotation_clip=False, arrowprops=lead,
            )  # fmt: skip
            label.set_in_layout(False)
            box = _extent(label, renderer)
            cost = sum(_overlap(box, other) for other in taken)
            cost += _outside(box, (frame.x0, frame.y0, frame.x1, frame.y1))
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label)
            else:
                label.remove()
            if cost == 0:
                break
        assert best is not None
        taken.append(_extent(best[1], renderer))
        placed[i] = best[1]
    return placed


def _extent(label: Any, renderer: Any) -> tuple[float, float, float, float]:
    """The text's box on screen (an Annotation's own extent would include its leader)."""
    from matplotlib.text import Text

    label.update_positions(renderer)
    box = Text.get_window_extent(label, renderer)
    return (box.x0, box.y0, box.x1, box.y1)


def _box(x: float, y: float, r: float) -> tuple[float, float, float, float]:
    return (x - r, y - r, x + r, y + r)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area where two boxes (x0, y0, x1, y1) intersect."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, width) * max(0.0, height)


def _outside(box: tuple[float, ...], frame: tuple[float, ...]) -> float:
    """How much of a box lies outside a frame (area, weighted to be avoided first)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return 10 * (area - _overlap(box, frame))
