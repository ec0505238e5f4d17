"""The :class:`Comparison` that ``nbd.compare`` returns: a table, a plot, a choice."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import _html
from .choice import Choice, choose
from .rows import COLUMNS, Cell, ComparisonRow

if TYPE_CHECKING:
    from ..artifact import Artifact

__all__ = ["Choice", "Comparison", "ComparisonRow"]

_LOWER_IS_BETTER = {"max_abs_diff", "p50_ms", "p95_ms", "p99_ms", "size_bytes", "memory_mb"}


class Comparison:
    """Rows of variant × provider × batch size, with the chosen metric as a column.

    Attributes:
        rows: One :class:`ComparisonRow` per measurement; skipped ones carry the reason in
            ``skipped``.
        metric: The metric's column name.
        partial: True when the run was interrupted.
        metric_drop: The accuracy drop the table's choice allows (points for percentages);
            :meth:`choice` and :meth:`best` take their own.
    """

    def __init__(
        self,
        rows: list[ComparisonRow],
        metric: str,
        higher_is_better: bool,
        *,
        partial: bool = False,
        variants: Mapping[str, Artifact] | None = None,
        metric_drop: float = 0.5,
    ) -> None:
        self.rows = rows
        self._variants = dict(variants or {})
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.partial = partial
        self.metric_drop = metric_drop

    @property
    def measured(self) -> list[ComparisonRow]:
        """Rows that ran (not skipped)."""
        return [r for r in self.rows if r.skipped is None]

    @property
    def skipped(self) -> list[ComparisonRow]:
        """Rows that could not run, with the reason in ``skipped``."""
        return [r for r in self.rows if r.skipped is not None]

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes measured, in the order of the rows."""
        return list(dict.fromkeys(r.batch_size for r in self.rows))

    def columns(self) -> list[str]:
        """Column order of the table."""
        return [*COLUMNS[:3], self.metric, *COLUMNS[3:]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the metric, whether partial, and each row's ``to_dict()``."""
        rows = [r.to_dict() for r in self.rows]
        return {"metric": self.metric, "partial": self.partial, "rows": rows}

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        from .._deps import require

        pandas = require("pandas", extra="lab", feature="Comparison.to_pandas")
        return pandas.DataFrame([r.to_dict() for r in self.rows])

    def artifact(self, row: ComparisonRow | Mapping[str, object]) -> Artifact:
        """The artifact a row measured (to serve or push the one you chose).

        Args:
            row: A row of this comparison, or its ``to_dict()``.
        """
        label = row.get("variant")
        if isinstance(label, str) and label in self._variants:
            return self._variants[label]
        from ..errors import ConfigError

        raise ConfigError(
            f"no artifact for variant {label!r}; this comparison measured {sorted(self._variants)}"
        )

    def choice(
        self,
        metric_drop: float | None = None,
        *,
        provider: str | None = None,
        batch_size: int | None = None,
    ) -> Choice | None:
        """The recommended row and why: the fastest beyond the timing noise among rows whose
        metric is within ``metric_drop`` of the first variant's; a tie on latency goes to
        the more accurate, then the smaller (:mod:`nbdeploy.bench.choice`).

        Args:
            metric_drop: Accuracy drop allowed (points for percentages); default
                :attr:`metric_drop`. Without labels, top-1 agreement stands in.
            provider: Default ``"cpu"`` where measured, else the first measured provider.
            batch_size: Default the first batch size.

        Returns:
            A :class:`~nbdeploy.bench.choice.Choice` (``.row``, ``.reason``), or ``None``
            when no row qualifies.
        """
        drop = self.metric_drop if metric_drop is None else metric_drop
        return choose(self.rows, higher_is_better=self.higher_is_better, metric_drop=drop,
                      provider=provider, batch_size=batch_size)  # fmt: skip

    def best(
        self,
        metric_drop: float = 0.5,
        *,
        provider: str | None = None,
        batch_size: int | None = None,
    ) -> ComparisonRow | None:
        """The row :meth:`choice` recommends (ties within the timing noise go to the more
        accurate, then the smaller), or ``None``: the fastest beyond the noise among rows
        whose metric is within ``metric_drop`` of the first variant's on the same provider
        (default ``"cpu"`` where measured) and batch size (default the first)."""
        chosen = self.choice(metric_drop, provider=provider, batch_size=batch_size)
        return chosen.row if chosen else None

    def plot(self, *, batch_size: int | None = None) -> Any:
        """A matplotlib Figure: metric (or agreement) against p50 latency, marker area by
        model size, the Pareto front drawn."""
        from .plot import pareto_figure

        return pareto_figure(self, batch_size=batch_size)

    def __repr__(self) -> str:
        partial = ", partial" if self.partial else ""
        return f"<Comparison of {len(self.rows)} rows by {self.metric}{partial}>"

    def __str__(self) -> str:
        cols = self.columns()
        lines = [" | ".join(cols)]
        lines += [" | ".join(_text(v, c) for c, v in zip(cols, row.cells(), strict=True))
                  for row in self.measured]  # fmt: skip
        lines += [f"skipped on {provider}: {reason}" for provider, reason in self._skips()]
        return "\n".join(lines) + ("\n(partial: interrupted)" if self.partial else "")

    def _skips(self) -> list[tuple[str, str]]:
        """One line per provider that could not run (not one per variant): its reason."""
        return list(dict.fromkeys((r.provider, r.skipped or "") for r in self.skipped))

    def _repr_html_(self) -> str:
        cols = self.columns()
        best = self._best_values()
        body = []
        for row in self.measured:
            cells = []
            for col, value in zip(cols, row.cells(), strict=True):
                mark = ' class="best"' if value is not None and best.get(col) == value else ""
                cells.append(f"<td{mark}>{_html.cell(_text(value, col))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        for provider, reason in self._skips():
            body.append(f"<tr><td colspan='{len(cols)}'><i>skipped on {_html.cell(provider)}: "
                        f"{_html.cell(reason)}</i></td></tr>")  # fmt: skip
        head = "".join(f"<th>{_html.cell(c)}</th>" for c in cols)
        note = " (partial: interrupted)" if self.partial else ""
        table = f"<table><tr>{head}</tr>{''.join(body)}</table>"
        return _html.card(f"Comparison by {self.metric}{note}", table)

    def _best_values(self) -> dict[str, float]:
        """The best value of each numeric column among measured rows (to highlight)."""
        best: dict[str, float] = {}
        table = [r.cells() for r in self.measured]
        for i, col in enumerate(self.columns()):
            values = [v for cells in table if isinstance(v := cells[i], int | float)]
            if not values or col == "batch_size":
                continue
            lower = col in _LOWER_IS_BETTER or (col == self.metric and not self.higher_is_better)
            best[col] = min(values) if lower else max(values)
        return best


def _text(value: Cell, column: str = "") -> str:
    """A cell with its unit: sizes in kB/MB, latencies in ms, throughput per second."""
    if value is None:
        return "–"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _UNITS.get(column, _plain_number)(float(value))
    return str(value)


def _plain_number(value: float) -> str:
    return f"{value:.4g}" if not value.is_integer() else f"{int(value):,}"


_UNITS: dict[str, Callable[[float], str]] = {
    "size_bytes": _html.human_bytes,
    "memory_mb": lambda v: f"{v:.1f} MB",
    "throughput": lambda v: f"{v:,.0f}/s",
    "p50_ms": lambda v: f"{v:.3g} ms",
    "p95_ms": lambda v: f"{v:.3g} ms",
    "p99_ms": lambda v: f"{v:.3g} ms",
}
