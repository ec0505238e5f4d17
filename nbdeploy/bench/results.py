"""The :class:`Comparison` that ``nbd.compare`` returns: a table, a plot, a choice."""

from __future__ import annotations

from typing import Any

from .. import _html

_COLUMNS = ["variant", "provider", "batch_size", "top1_agreement", "max_abs_diff", "p50_ms",
            "p95_ms", "p99_ms", "throughput", "size_bytes", "memory_mb", "note"]  # fmt: skip
_LOWER_IS_BETTER = {"max_abs_diff", "p50_ms", "p95_ms", "p99_ms", "size_bytes", "memory_mb"}


class Comparison:
    """Rows of variant × provider × batch size, with the chosen metric as a column.

    Attributes:
        rows: One dict per measurement; skipped ones carry ``skipped`` (the reason).
        metric: The metric's column name.
        partial: True when the run was interrupted.
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        metric: str,
        higher_is_better: bool,
        *,
        partial: bool = False,
        variants: dict[str, Any] | None = None,
    ) -> None:
        self.rows = rows
        self._variants = variants or {}
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.partial = partial

    @property
    def measured(self) -> list[dict[str, Any]]:
        """Rows that ran (not skipped)."""
        return [r for r in self.rows if "skipped" not in r]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Rows that could not run, with the reason in ``skipped``."""
        return [r for r in self.rows if "skipped" in r]

    def columns(self) -> list[str]:
        """Column order of the table."""
        return [*_COLUMNS[:3], self.metric, *_COLUMNS[3:]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"metric": self.metric, "partial": self.partial, "rows": self.rows}

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        from .._deps import require

        pandas = require("pandas", extra="lab", feature="Comparison.to_pandas")
        return pandas.DataFrame(self.rows)

    def artifact(self, row: dict[str, Any]) -> Any:
        """The artifact a row measured (to serve or push the one you chose)."""
        try:
            return self._variants[row["variant"]]
        except KeyError:
            from ..errors import ConfigError

            raise ConfigError(
                f"no artifact for variant {row.get('variant')!r}; this comparison measured "
                f"{sorted(self._variants)}"
            ) from None

    def best(self, metric_drop: float = 0.5, *, provider: str = "cpu") -> dict[str, Any] | None:
        """The fastest row (p50) whose metric is within ``metric_drop`` of the first
        variant's on the same provider and batch size (points for accuracy)."""
        rows = [r for r in self.measured if r["provider"] == provider]
        if not rows:
            return None
        reference = rows[0].get(self.metric)
        if reference is None:
            return min(rows, key=lambda r: r["p50_ms"])

        def allowed(row: dict[str, Any]) -> bool:
            value = row.get(self.metric)
            if value is None:
                return False
            drop = reference - value if self.higher_is_better else value - reference
            return bool(drop <= metric_drop)

        candidates = [r for r in rows if allowed(r) and r["batch_size"] == rows[0]["batch_size"]]
        return min(candidates, key=lambda r: r["p50_ms"]) if candidates else None

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
        for row in self.rows:
            if "skipped" in row:
                lines.append(f"{row['variant']} | {row['provider']} | skipped: {row['skipped']}")
            else:
                lines.append(" | ".join(_text(row.get(c)) for c in cols))
        return "\n".join(lines) + ("\n(partial: interrupted)" if self.partial else "")

    def _repr_html_(self) -> str:
        cols = self.columns()
        best = self._best_values(cols)
        body = []
        for row in self.rows:
            if "skipped" in row:
                cells = [_html.cell(row["variant"]), _html.cell(row["provider"])]
                reason = _html.cell(row["skipped"])
                span = len(cols) - 2
                body.append(
                    f"<tr><td>{cells[0]}</td><td>{cells[1]}</td>"
                    f"<td colspan='{span}'><i>skipped: {reason}</i></td></tr>"
                )
                continue
            cells = []
            for col in cols:
                value = row.get(col)
                mark = ' class="best"' if value is not None and best.get(col) == value else ""
                cells.append(f"<td{mark}>{_html.cell(_text(value))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        head = "".join(f"<th>{_html.cell(c)}</th>" for c in cols)
        note = " (partial: interrupted)" if self.partial else ""
        table = f"<table><tr>{head}</tr>{''.join(body)}</table>"
        return _html.card(f"Comparison by {self.metric}{note}", table)

    def _best_values(self, cols: list[str]) -> dict[str, Any]:
        best: dict[str, Any] = {}
        for col in cols:
            values = [r[col] for r in self.measured if isinstance(r.get(col), int | float)]
            if not values or col == "batch_size":
                continue
            lower = col in _LOWER_IS_BETTER or (col == self.metric and not self.higher_is_better)
            best[col] = min(values) if lower else max(values)
        return best


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
