"""One row of a :class:`~nbdeploy.bench.results.Comparison`: a variant on one provider at
one batch size, measured or skipped with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["COLUMNS", "Cell", "ComparisonRow"]

Cell: TypeAlias = str | int | float | None
"""What a table cell holds."""

# Data order (CSV, to_dict); the metric's own column goes after ``batch_size`` under the
# metric's name. Tables show fewer columns, with units (see report.py).
COLUMNS = ("variant", "provider", "batch_size", "top1_agreement", "max_abs_diff", "p50_ms",
           "p50_low_ms", "p50_high_ms", "stable", "p95_ms", "p99_ms", "throughput",
           "size_bytes", "memory_mb", "placement", "nodes_on_provider", "nodes_total",
           "note")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ComparisonRow:
    """One measurement of ``nbd.compare``; a value that was not measured is ``None``.

    Read it by attribute (``row.p50_ms``, ``row.metric``). For code written when rows were
    dicts, ``row["p50_ms"]``, ``row["accuracy"]`` (the metric under its own name) and
    ``row.get("top1_agreement")`` answer as the dict did, and :meth:`to_dict` gives it back.

    Attributes:
        variant: The variant's label (its name and last step, e.g. ``"mlp [fp16]"``).
        provider: The execution provider's short name (``"cpu"``, ``"cuda"``, ...).
        batch_size: The batch size timed.
        metric_name: The metric's name (``"accuracy"``, ``"mse"``, a function's name).
        metric: The metric's value on the data; ``None`` without labels or when skipped.
        top1_agreement: Percent of top-1 predictions equal to the first variant's, for
            class scores only.
        max_abs_diff: Largest absolute difference from the first variant's outputs.
        p50_ms: Median latency in milliseconds; ``p95_ms`` and ``p99_ms`` likewise.
        p50_low_ms: Lower bound of the median's 95 % confidence interval (ms);
            ``p50_high_ms`` the upper one. ``None`` where unknown: the median alone counts.
        stable: Whether the timing runs agreed (see :mod:`nbdeploy.bench.timing`).
        throughput: Samples per second at this batch size.
        size_bytes: The artifact's size.
        memory_mb: Memory that loading and scoring the variant took.
        placement: Where onnxruntime put the nodes, as text: ``"CPU 6/6"``,
            ``"OpenVINO 6/6 in 1 subgraph"``, ``"OpenVINO 4/6 in 2 subgraphs · CPU 2"``
            (:class:`~nbdeploy.bench.placement.Placement`); ``None`` where unknown (a
            source model's row, or an older onnxruntime on the CPU).
        nodes_on_provider: Nodes the row's provider ran; ``nodes_total`` all of them.
        note: Warnings (nodes that fell back to the CPU, runs that varied wildly).
        skipped: Why the row could not run (the provider is unavailable), else ``None``.
        source: The row measured the source model itself (torch eager, Keras), which is
            compared but never chosen: it cannot be served.
    """

    variant: str
    provider: str
    batch_size: int
    metric_name: str
    metric: float | None = None
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    p50_ms: float | None = None
    p50_low_ms: float | None = None
    p50_high_ms: float | None = None
    stable: bool | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    throughput: float | None = None
    size_bytes: int | None = None
    memory_mb: float | None = None
    placement: str | None = None
    nodes_on_provider: int | None = None
    nodes_total: int | None = None
    note: str = ""
    skipped: str | None = None
    source: bool = False

    @property
    def p50_interval_ms(self) -> tuple[float, float] | None:
        """``(low, high)`` of the median latency in ms (the median itself at both ends where
        no interval was measured); ``None`` for a row that was not timed."""
        if self.p50_ms is None:
            return None
        low = self.p50_low_ms if self.p50_low_ms is not None else self.p50_ms
        high = self.p50_high_ms if self.p50_high_ms is not None else self.p50_ms
        return min(low, self.p50_ms), max(high, self.p50_ms)

    def cells(self) -> tuple[Cell, ...]:
        """The values in table order: :data:`COLUMNS` with the metric after ``batch_size``."""
        return (self.variant, self.provider, self.batch_size, self.metric,
                self.top1_agreement, self.max_abs_diff, self.p50_ms, self.p50_low_ms,
                self.p50_high_ms, self.stable, self.p95_ms, self.p99_ms, self.throughput,
                self.size_bytes, self.memory_mb, self.placement, self.nodes_on_provider,
                self.nodes_total, self.note)  # fmt: skip

    def to_dict(self) -> dict[str, Cell]:
        """The row as the plain dict rows used to be: a skipped row has only variant,
        provider, batch_size and ``skipped``; a measured one has the metric under its
        name, and ``top1_agreement`` and the placement only where they were computed."""
        row: dict[str, Cell] = {
            "variant": self.variant, "provider": self.provider, "batch_size": self.batch_size,
        }  # fmt: skip
        if self.source:
            row["source"] = True
        if self.skipped is not None:
            return row | {"skipped": self.skipped}
        row[self.metric_name] = self.metric
        row["max_abs_diff"] = self.max_abs_diff
        if self.top1_agreement is not None:
            row["top1_agreement"] = self.top1_agreement
        row |= {
            "p50_ms": self.p50_ms, "p50_low_ms": self.p50_low_ms,
            "p50_high_ms": self.p50_high_ms, "stable": self.stable,
            "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
            "throughput": self.throughput, "size_bytes": self.size_bytes,
            "memory_mb": self.memory_mb,
        }  # fmt: skip
        if self.placement is not None:
            row |= {"placement": self.placement, "nodes_on_provider": self.nodes_on_provider,
                    "nodes_total": self.nodes_total}  # fmt: skip
        return row | {"note": self.note}

    def __getitem__(self, key: str) -> Cell:
        """The value under a key of :meth:`to_dict` (``KeyError`` where it has none)."""
        try:
            return self.to_dict()[key]
        except KeyError:
            raise KeyError(
                f"{key!r}: this {'skipped' if self.skipped else 'measured'} row has "
                f"{list(self.to_dict())} (or read it as an attribute, e.g. row.p50_ms)"
            ) from None

    def get(self, key: str, default: Cell = None) -> Cell:
        """As ``dict.get`` on :meth:`to_dict`."""
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        """Whether :meth:`to_dict` has ``key`` (``"skipped" in row``, as with the dict)."""
        return key in self.to_dict()
