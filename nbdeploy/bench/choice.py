"""Which row a comparison recommends, and why — without picking on timing noise.

Among the rows of one provider and batch size whose accuracy is within ``metric_drop`` of
the first variant's, the fastest median wins only where it is faster *beyond the noise*:
its latency interval ends below the other's begins. Rows whose intervals overlap the
fastest one's are a tie, and a tie goes to the more accurate row (the metric; then top-1
agreement with the first variant; then the smaller output difference), then to the
smaller file, then to the lower median.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .rows import Cell, ComparisonRow
from .units import bytes_text, number_text, plus_minus

__all__ = ["Choice", "choose"]

_AGREE = "top1_agreement"
_PERCENT = {"accuracy", "top5", _AGREE}


@dataclass(frozen=True)
class Choice:
    """The row a comparison chose and one sentence saying why (deploy can attach it).

    Attributes:
        row: The chosen row.
        reason: Why, in one readable sentence.
        tied: Variants whose latency was within the noise of the fastest (the chosen one
            among them).
        excluded: Variants left out because their accuracy dropped more than allowed.
        metric_drop: The accuracy drop that was allowed.
    """

    row: ComparisonRow
    reason: str
    tied: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    metric_drop: float = 0.5

    @property
    def variant(self) -> str:
        """The chosen variant's label."""
        return self.row.variant

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the chosen row's values, the reason and the tie/exclusions."""
        return {**self.row.to_dict(), "reason": self.reason, "tied": list(self.tied),
                "excluded": list(self.excluded), "metric_drop": self.metric_drop}  # fmt: skip

    def __str__(self) -> str:
        return self.reason


def choose(
    rows: Sequence[ComparisonRow],
    *,
    higher_is_better: bool,
    metric_drop: float = 0.5,
    provider: str | None = None,
    batch_size: int | None = None,
) -> Choice | None:
    """The recommended row of ``rows`` (see the module doc), or ``None`` when none qualifies.

    Args:
        rows: A comparison's rows; skipped and untimed ones are ignored.
        higher_is_better: The metric's direction.
        metric_drop: Largest accuracy drop from the first variant allowed (points for
            percentages). Without labels, top-1 agreement with the first variant stands in.
        provider: Provider to choose on; default ``"cpu"`` where measured, else the first
            measured provider.
        batch_size: Batch size to choose at; default the first one measured.
    """
    timed = [r for r in rows if r.skipped is None and r.p50_ms is not None]
    if provider is None:
        measured = [r.provider for r in timed]
        provider = "cpu" if "cpu" in measured or not measured else measured[0]
    mine = [r for r in timed if r.provider == provider]
    batch = batch_size if batch_size is not None else (mine[0].batch_size if mine else None)
    mine = [r for r in mine if r.batch_size == batch]
    if not mine:
        return None
    reference, quality = mine[0], _Quality.of(mine[0], higher_is_better)
    # The source model sets the bar when it comes first, but cannot be served: not a choice.
    allowed = [r for r in mine if not r.source and quality.within(r, reference, metric_drop)]
    if not allowed:
        return None
    fastest = min(allowed, key=_p50)
    tied = [r for r in allowed if not _clearly_faster(fastest, r)]
    chosen = min(tied, key=quality.preference)
    excluded = [r for r in mine if not quality.within(r, reference, metric_drop)]
    reason = _reason(chosen, tied, allowed, excluded, quality, metric_drop)
    if excluded:
        reason += f"; {_excluded(excluded, reference, quality, metric_drop)}"
    names = tuple(r.variant for r in excluded)
    return Choice(chosen, reason, tuple(r.variant for r in tied), names, metric_drop)


def _p50(row: ComparisonRow) -> float:
    return row.p50_ms if row.p50_ms is not None else float("inf")


def _clearly_faster(a: ComparisonRow, b: ComparisonRow) -> bool:
    """Whether ``a``'s latency interval ends before ``b``'s begins (no overlap)."""
    ia, ib = a.p50_interval_ms, b.p50_interval_ms
    return ia is not None and ib is not None and ia[1] < ib[0]


@dataclass(frozen=True)
class _Quality:
    """What accuracy means for these rows: the metric, else top-1 agreement, else none."""

    name: str
    read: Callable[[ComparisonRow], float | None]
    higher_is_better: bool

    @classmethod
    def of(cls, reference: ComparisonRow, higher_is_better: bool) -> _Quality:
        if reference.metric is not None:
            return cls(reference.metric_name, lambda r: r.metric, higher_is_better)
        if reference.top1_agreement is not None:
            return cls("top1_agreement", lambda r: r.top1_agreement, True)
        return cls("", lambda r: None, True)

    def within(self, row: ComparisonRow, reference: ComparisonRow, drop: float) -> bool:
        if not self.name:
            return True
        value, ref = self.read(row), self.read(reference)
        if value is None or ref is None:
            return False
        lost = ref - value if self.higher_is_better else value - ref
        return bool(lost <= drop)  # a metric function may return numpy floats

    def preference(self, row: ComparisonRow) -> tuple[float, ...]:
        """Sort key, best first: accuracy, agreement, output difference, size, median."""
        value = self.read(row)
        sign = -1.0 if self.higher_is_better else 1.0
        return (sign * value if value is not None else float("inf"),
                -(row.top1_agreement if row.top1_agreement is not None else -1.0),
                row.max_abs_diff if row.max_abs_diff is not None else float("inf"),
                row.size_bytes if row.size_bytes is not None else float("inf"),
                _p50(row))  # fmt: skip

    def text(self, row: ComparisonRow) -> str:
        value = self.read(row)
        return f"{self.name} {_value(value, self.name)}" if value is not None else ""


def _latency(row: ComparisonRow) -> str:
    assert row.p50_ms is not None
    return plus_minus(row.p50_ms, row.p50_low_ms, row.p50_high_ms)


def _value(value: Cell, name: str) -> str:
    """A metric or difference as text: percentages to two decimals, others plainly."""
    if not isinstance(value, int | float):
        return str(value)
    if name in _PERCENT:
        return f"{value:.2f}".rstrip("0").rstrip(".") + "%"
    return number_text(float(value))


def _reason(
    chosen: ComparisonRow,
    tied: list[ComparisonRow],
    allowed: list[ComparisonRow],
    excluded: list[ComparisonRow],
    quality: _Quality,
    drop: float,
) -> str:
    name, reference = chosen.variant, (allowed + excluded)[0]
    if len(allowed) == 1:
        alone = "variant accurate enough" if excluded else "variant measured"
        where = f"on {chosen.provider} at batch {chosen.batch_size}"
        return f"{name}: the only {alone} {where}" + _unsettled([chosen])
    if len(tied) == 1:
        runner = min((r for r in allowed if r is not chosen), key=_p50)
        versus = f"{_latency(chosen)} vs {runner.variant} {_latency(runner)}"
        accuracy = ""
        if chosen is not reference and quality.name:
            ref_value = _value(quality.read(reference), quality.name)
            accuracy = (
                f" at {quality.text(chosen)}, within {_drop(drop, quality.name)} of "
                f"{reference.variant}'s {ref_value}"
            )
        return f"{name}: fastest beyond the noise ({versus}){accuracy}" + _unsettled(
            [chosen, runner]
        )
    others = [r for r in tied if r is not chosen]
    rivals = ", ".join(f"{r.variant} {_latency(r)}" for r in others[:3])
    rivals += ", …" if len(others) > 3 else ""
    why = _why(chosen, min(others, key=quality.preference), quality, reference)
    noise = f"tie on latency within the noise ({_latency(chosen)} vs {rivals})"
    return f"{name}: {noise}; chosen as {why}" + _unsettled(tied)


def _excluded(
    excluded: list[ComparisonRow], reference: ComparisonRow, quality: _Quality, drop: float
) -> str:
    named = ", ".join(f"{r.variant} ({_value(quality.read(r), quality.name)})" for r in excluded)
    return (
        f"left out for losing more than {_drop(drop, quality.name)} of {quality.name} "
        f"against {reference.variant}: {named}"
    )


def _why(
    chosen: ComparisonRow, runner: ComparisonRow, quality: _Quality, ref: ComparisonRow
) -> str:
    """What decided the tie between the chosen row and the next preferred one."""
    a, b = quality.read(chosen), quality.read(runner)
    if a is not None and b is not None and a != b:
        return f"more accurate ({quality.text(chosen)} vs {_value(b, quality.name)})"
    if chosen.top1_agreement != runner.top1_agreement and quality.name != _AGREE:
        mine, theirs = _value(chosen.top1_agreement, _AGREE), _value(runner.top1_agreement, _AGREE)
        return f"closer to {ref.variant} (top-1 agreement {mine} vs {theirs})"
    if chosen.max_abs_diff != runner.max_abs_diff:
        mine, theirs = _value(chosen.max_abs_diff, ""), _value(runner.max_abs_diff, "")
        return f"closer to {ref.variant} (max abs diff {mine} vs {theirs})"
    if chosen.size_bytes and runner.size_bytes and chosen.size_bytes != runner.size_bytes:
        return f"smaller ({bytes_text(chosen.size_bytes)} vs {bytes_text(runner.size_bytes)})"
    return "the lower median"


def _drop(drop: float, name: str) -> str:
    return f"{drop:g} pt" if name in _PERCENT else f"{drop:g}"


def _unsettled(rows: list[ComparisonRow]) -> str:
    unstable = [r.variant for r in rows if r.stable is False]
    if not unstable:
        return ""
    return f" (timings of {', '.join(unstable)} did not settle: a tentative choice)"
