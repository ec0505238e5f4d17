"""SQNR along the network's depth (matplotlib, no pyplot state)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._deps import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .activation_report import ActivationReport


_NAMED = 24


def sqnr_figure(report: ActivationReport) -> Figure:
    """See :meth:`ActivationReport.plot`: one point per matched tensor, x its depth in
    the reference's topological order, y its SQNR; identical tensors at a ceiling line."""
    require("matplotlib", extra="lab", feature="ActivationReport.plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ..bench.plot import _inline_figure

    finite = [t.sqnr_db for t in report.tensors if not t.identical and math.isfinite(t.sqnr_db)]
    ceiling = max([*finite, report.threshold_db]) + 10
    xs = [t.depth for t in report.tensors]
    ys = [ceiling if t.identical or t.sqnr_db > ceiling else t.sqnr_db for t in report.tensors]
    figure = _inline_figure()(figsize=(8, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(xs, ys, marker="o", markersize=4, linewidth=1, color="C0", label="SQNR")
    axes.axhline(report.threshold_db, color="C3", linestyle="--", linewidth=1,
                 label=f"threshold {report.threshold_db:g} dB")  # fmt: skip
    axes.axhline(ceiling, color="0.7", linestyle=":", linewidth=1, label="identical")
    first = report.first_divergence
    if first is not None:
        axes.scatter([first.depth], [first.sqnr_db], s=80, color="C3", zorder=3,
                     label=f"first divergence: {first.tensor}")  # fmt: skip
    if len(xs) <= _NAMED:  # few enough to name each tensor on the axis
        axes.set_xticks(xs, [t.tensor for t in report.tensors], rotation=45, ha="right",
                        fontsize=8)  # fmt: skip
    axes.set_xlabel("depth (topological order of the reference's nodes)")
    axes.set_ylabel("SQNR (dB)")
    axes.set_title(f"{report.reference} → {report.variant}", fontsize=10)
    axes.legend(fontsize=8, loc="lower left")
    return figure
