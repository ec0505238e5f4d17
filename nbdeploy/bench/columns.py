"""The columns a comparison table shows: header, value to sort by, text with its unit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .rows import Cell, ComparisonRow
from .units import bytes_text, interval_text, ms_text, number_text, plus_minus

__all__ = ["Column", "shown_columns"]

_PERCENT = {"accuracy", "top5"}


@dataclass(frozen=True)
class Column:
    """One column of the shown table.

    Attributes:
        key: The row field (or the metric's name) it shows.
        header: Its title.
        value: The raw value (sorting, highlighting the best); ``None`` where absent.
        text: The value as text, with its unit.
        lower_is_better: Which end is best, or ``None`` for columns not highlighted.
        hint: A tooltip for a cell (e.g. the interval's bounds), or ``""``.
    """

    key: str
    header: str
    value: Callable[[ComparisonRow], Cell]
    text: Callable[[ComparisonRow], str]
    lower_is_better: bool | None = None
    hint: Callable[[ComparisonRow], str] = lambda row: ""


def _or_dash(
    read: Callable[[ComparisonRow], Cell], fmt: Callable[[float], str]
) -> Callable[[ComparisonRow], str]:
    def text(row: ComparisonRow) -> str:
        value = read(row)
        return "–" if value is None else fmt(float(value))

    return text


def _p50_text(row: ComparisonRow) -> str:
    if row.p50_ms is None:
        return "–"
    return plus_minus(row.p50_ms, row.p50_low_ms, row.p50_high_ms)


def _p50_hint(row: ComparisonRow) -> str:
    if row.p50_low_ms is None or row.p50_high_ms is None:
        return ""
    settled = "" if row.stable is not False else "; runs did not settle"
    assert row.p50_ms is not None
    return f"95% CI {interval_text(row.p50_ms, row.p50_low_ms, row.p50_high_ms)}{settled}"


def shown_columns(metric: str, higher_is_better: bool, rows: list[ComparisonRow]) -> list[Column]:
    """The columns worth showing for ``rows``: a column no row has a value for is left out."""
    percent = metric in _PERCENT
    columns = [
        Column("variant", "variant", lambda r: r.variant, lambda r: r.variant),
        Column("provider", "provider", lambda r: r.provider, lambda r: r.provider),
        Column(metric, metric, lambda r: r.metric,
               _or_dash(lambda r: r.metric, _percent if percent else number_text),
               not higher_is_better),
        Column("top1_agreement", "top-1 agreement", lambda r: r.top1_agreement,
               _or_dash(lambda r: r.top1_agreement, _percent), False),
        Column("max_abs_diff", "max abs diff", lambda r: r.max_abs_diff,
               _or_dash(lambda r: r.max_abs_diff, number_text), True),
        Column("p50_ms", "p50 ± 95% CI", lambda r: r.p50_ms, _p50_text, True, _p50_hint),
        Column("p95_ms", "p95", lambda r: r.p95_ms, _or_dash(lambda r: r.p95_ms, ms_text), True),
        Column("p99_ms", "p99", lambda r: r.p99_ms, _or_dash(lambda r: r.p99_ms, ms_text), True),
        Column("throughput", "throughput", lambda r: r.throughput,
               _or_dash(lambda r: r.throughput, lambda v: f"{v:,.0f}/s"), False),
        Column("size_bytes", "size", lambda r: r.size_bytes,
               _or_dash(lambda r: r.size_bytes, bytes_text), True),
        Column("memory_mb", "memory", lambda r: r.memory_mb,
               _or_dash(lambda r: r.memory_mb, lambda v: f"{v:.1f} MB"), True),
        Column("placement", "nodes on provider", lambda r: r.placement,
               lambda r: r.placement or "–"),
        Column("note", "note", lambda r: r.note or None, lambda r: r.note),
    ]  # fmt: skip
    keep = {"variant", "provider", "p50_ms"}
    return [c for c in columns if c.key in keep or any(c.value(r) is not None for r in rows)]


def _percent(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"
