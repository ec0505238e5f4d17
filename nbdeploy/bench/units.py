"""Numbers as people read them: ``221 kB``, ``1.90 ms ±0.07``, ``13,390`` (never
``1.339e+04``)."""

from __future__ import annotations

import math

__all__ = ["bytes_text", "interval_text", "ms_text", "number_text", "plus_minus"]


def bytes_text(size: float) -> str:
    """``4096`` → ``'4.1 kB'``, ``221_000`` → ``'221 kB'``, ``226_704_935`` → ``'227 MB'``."""
    for unit in ("B", "kB", "MB", "GB"):
        if unit == "B" and size < 1000:
            return f"{size:.0f} B"
        if float(f"{size:.3g}") < 1000 or unit == "GB":
            return f"{_sig3(size)} {unit}"
        size /= 1000
    return f"{_sig3(size)} TB"


def ms_text(ms: float) -> str:
    """A latency in milliseconds with three significant digits: ``'0.0213 ms'``."""
    return f"{_sig3(ms)} ms"


def plus_minus(ms: float, low: float | None, high: float | None) -> str:
    """``'1.90 ms ±0.07'``: the median and the larger distance to its interval's bounds,
    to the median's precision (or one significant digit where that would print 0)."""
    if low is None or high is None:
        return ms_text(ms)
    half = max(ms - low, high - ms, 0.0)
    decimals = _decimals(ms)
    shown = f"{half:.{decimals}f}"
    if half > 0 and float(shown) == 0:  # one significant digit, still without an exponent
        one = float(f"{half:.1g}")
        shown = f"{one:.{-math.floor(math.log10(one))}f}"
    return f"{_fixed(ms, decimals)} ms ±{shown}"


def interval_text(ms: float, low: float, high: float) -> str:
    """An interval's bounds at the median's precision: ``'1.80–2.00 ms'``."""
    decimals = _decimals(ms)
    return f"{_fixed(low, decimals)}–{_fixed(high, decimals)} ms"


def number_text(value: float) -> str:
    """A plain number: integers with thousands separators, others with four significant
    digits, scientific only for tiny non-zero values (``3e-07``)."""
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


def _decimals(value: float) -> int:
    """Decimals that give three significant digits (none past the units for ≥ 100)."""
    if value <= 0 or not math.isfinite(value):
        return 2
    return max(0, 2 - math.floor(math.log10(value)))


def _fixed(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _sig3(value: float) -> str:
    """Three significant digits without an exponent: 0.0213, 1.9, 221, 4.1."""
    if value == 0:
        return "0"
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.{_decimals(abs(value))}f}"
    return text
