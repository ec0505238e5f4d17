"""What a deployment looks like now: per version its traffic, requests per second,
latency and errors over the last minutes (a sparkline each), where it came from; and
the answer to one request sent to it (``dep.try_it()``).

Plain HTML and text from the server's overview, so a saved notebook reads well on
GitHub and before any cell runs; JupyterLab's extension renders the same deployment
live (``MIME_TYPE``), updating in place while its server answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

from . import _html
from .server.client import VersionOverview
from .server.stats import WINDOW_S

__all__ = [
    "MIME_TYPE",
    "TryResult",
    "first_values",
    "idle_note",
    "sparkline",
    "versions_html",
    "versions_text",
]

MIME_TYPE = "application/vnd.nbdeploy.deployment.v1+json"
HEADER = ["version", "traffic", "req/s", "p50 / p95 ms", "errors", "last 5 min", "made by"]
_SPARK_W, _SPARK_H = 90, 18
SHOWN_VALUES = 6  # values of each output a Try-it answer shows


def sparkline(history: Sequence[Mapping[str, Any]], key: str = "requests") -> str:
    """A small SVG polyline of ``key`` per 10-second window (empty windows as 0)."""
    if not history:
        return '<span title="no requests in the last 5 minutes">–</span>'
    start, end, step = history[0]["t"], history[-1]["t"], WINDOW_S
    by_time = {w["t"]: float(w.get(key) or 0) for w in history}
    values = [by_time.get(t, 0.0) for t in range(start, end + step, step)]
    top = max(values) or 1.0
    dx = _SPARK_W / max(1, len(values) - 1)
    points = " ".join(f"{i * dx:.1f},{_SPARK_H - 1 - v / top * (_SPARK_H - 2):.1f}"
                      for i, v in enumerate(values))  # fmt: skip
    title = f"{key} per 10 s, peak {top:g}"
    return (f'<svg width="{_SPARK_W}" height="{_SPARK_H}" role="img" aria-label="{title}">'
            f"<title>{title}</title><polyline fill='none' stroke='currentColor' "
            f"stroke-width='1.5' points='{points}'/></svg>")  # fmt: skip


def versions_html(versions: Sequence[VersionOverview]) -> str:
    """One row per version: traffic, rate, latency, errors, a sparkline, lineage."""
    rows = [[f"v{v.version}" + ("" if v.ready else f" (not ready: {v.reason})"),
             _traffic(v), f"{v.requests_per_s:g}", _latency(v), _errors(v),
             _html.Raw(sparkline(v.history)), _made_by(v)]
            for v in versions]  # fmt: skip
    note = idle_note(versions)
    return _html.table(HEADER, rows) + (f"<p>{escape(note)}</p>" if note else "")


def idle_note(versions: Sequence[VersionOverview]) -> str:
    """What the versions loaded at 0% are for, and what they cost ("" if none)."""
    idle = [f"v{v.version}" for v in versions if v.ready and v.traffic == 0]
    if not idle:
        return ""
    return (f"{', '.join(idle)} {'stays' if len(idle) == 1 else 'stay'} loaded at 0% so "
            "that rollback() is instant, holding its memory until the next version "
            "replaces it; unload_idle() frees it now.")  # fmt: skip


def _traffic(v: VersionOverview) -> str:
    return f"{v.traffic:g}%" + (" (idle, for rollback)" if v.ready and v.traffic == 0 else "")


def versions_text(versions: Sequence[VersionOverview]) -> list[str]:
    """The same as lines of text."""
    lines = [f"v{v.version}: {_traffic(v)} · {v.requests_per_s:g} req/s · "
             f"{_latency(v)} ms · {_errors(v)} errors · "
             f"{' → '.join(v.steps) or 'made elsewhere'}" for v in versions]  # fmt: skip
    return lines + ([note] if (note := idle_note(versions)) else [])


def _latency(v: VersionOverview) -> str:
    if v.p50_ms is None:
        return "–"
    return f"{v.p50_ms:.3g} / {v.p95_ms:.3g}" if v.p95_ms is not None else f"{v.p50_ms:.3g}"


def _errors(v: VersionOverview) -> str:
    recent = sum(int(w.get("failures") or 0) for w in v.history)
    return f"{recent} of {sum(int(w.get('requests') or 0) for w in v.history)}"


def _made_by(v: VersionOverview) -> _html.Raw:
    steps = escape(" → ".join(v.steps)) or "–"
    detail = escape("; ".join(x for x in (v.source, v.parity) if x))
    return _html.Raw(f'<span title="{detail}">{steps}</span>')


@dataclass(frozen=True)
class TryResult:
    """The answer to one request sent to a deployment (``dep.try_it()``).

    Attributes:
        name: The model.
        version: The version that answered.
        ms: The round trip in milliseconds, as a browser's request would see it.
        outputs: Each output by name.
    """

    name: str
    version: str
    ms: float
    outputs: dict[str, np.ndarray]

    @classmethod
    def from_response(cls, name: str, response: Mapping[str, Any], ms: float) -> TryResult:
        """From a V2 JSON inference response."""
        outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"])
                   for o in response.get("outputs", [])}  # fmt: skip
        return cls(name, str(response.get("model_version", "")), ms, outputs)

    def _rows(self) -> list[list[Any]]:
        return [[name, f"{list(value.shape)} {value.dtype}", first_values(value)]
                for name, value in self.outputs.items()]  # fmt: skip

    def __str__(self) -> str:
        lines = [f"{self.name} v{self.version} answered in {self.ms:.2f} ms"]
        return "\n".join(lines + [f"  {n}: {shape} {first}" for n, shape, first in self._rows()])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        title = f"{self.name} v{self.version} answered in {self.ms:.2f} ms"
        return _html.card(title, _html.table(["output", "shape", "first values"], self._rows()))


def first_values(value: np.ndarray, count: int = SHOWN_VALUES) -> str:
    """``"0.1, 2, …  (40 values)"``: the first ``count`` values, and how many there are."""
    flat = value.reshape(-1)
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v)
                      for v in flat[:count].tolist())  # fmt: skip
    return shown + (f", … ({flat.size} values)" if flat.size > count else "")
