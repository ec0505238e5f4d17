"""The :class:`Comparison` that ``nbd.compare`` returns: a table, a plot, a choice, a
report to keep."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import report
from .choice import Choice, choose
from .rows import COLUMNS, ComparisonRow

if TYPE_CHECKING:
    from ..artifact import Artifact
    from ..graph.activation_report import ActivationReport

__all__ = ["Choice", "Comparison", "ComparisonRow"]


class Comparison:
    """Rows of variant × provider × batch size, with the chosen metric as a column.

    Attributes:
        rows: One :class:`ComparisonRow` per measurement; skipped ones carry the reason in
            ``skipped``.
        metric: The metric's column name.
        higher_is_better: The metric's direction.
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
        activations: Mapping[str, ActivationReport] | None = None,
    ) -> None:
        self.rows = rows
        self._variants = dict(variants or {})
        self._activations = dict(activations or {})
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
        """Column order of the data (:meth:`to_csv` adds ``skipped``, ``chosen``, ``reason``)."""
        return [*COLUMNS[:3], self.metric, *COLUMNS[3:]]

    def skips(self) -> list[tuple[str, str]]:
        """``(provider, reason)`` once per provider that could not run (not per variant)."""
        return list(dict.fromkeys((r.provider, r.skipped or "") for r in self.skipped))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the metric, whether partial, each row's ``to_dict()``, and the
        choice at each batch size."""
        rows = [r.to_dict() for r in self.rows]
        chosen = [c.to_dict() for b in self.batch_sizes if (c := self.choice(batch_size=b))]
        return {"metric": self.metric, "partial": self.partial, "rows": rows, "chosen": chosen}

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        from .._deps import require

        pandas = require("pandas", extra="lab", feature="Comparison.to_pandas")
        return pandas.DataFrame([r.to_dict() for r in self.rows])

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """A self-contained HTML report to keep: sortable tables (one per batch size) with
        latency intervals, the chosen row marked with its reason, skipped providers once.

        Args:
            path: Also write the report to this file (UTF-8).

        Returns:
            The HTML document.
        """
        page = report.document(self)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """Every row and column as CSV: interval bounds (``p50_low_ms``, ``p50_high_ms``) in
        their own columns, skipped rows with ``skipped``, and ``chosen``/``reason``.

        Args:
            path: Also write the CSV to this file (UTF-8).

        Returns:
            The CSV text.
        """
        text = report.csv_text(self)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8", newline="")
        return text

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

    @property
    def drifts(self) -> dict[str, ActivationReport]:
        """The activation reports compare made, by variant label: one per variant whose
        outputs differ from the first artifact's (models up to 64 MB)."""
        return dict(self._activations)

    def activations(self, variant: str, data: Any = None) -> ActivationReport:
        """Where ``variant``'s answers drift from the first artifact's, tensor by tensor
        (:func:`nbdeploy.activations`): the report compare made, or one on ``data``.

        Raises:
            ConfigError: No artifact of that label in this comparison.
        """
        if data is None and variant in self._activations:
            return self._activations[variant]
        from ..graph.activations import activations

        artifact = self.artifact({"variant": variant})
        return activations(next(iter(self._variants.values())), artifact, data)

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
        """A matplotlib Figure: metric (or agreement) against p50 latency with its interval,
        marker area by model size (with a legend), the Pareto front drawn."""
        from .plot import pareto_figure

        return pareto_figure(self, batch_size=batch_size)

    def __repr__(self) -> str:
        partial = ", partial" if self.partial else ""
        return f"<Comparison of {len(self.rows)} rows by {self.metric}{partial}>"

    def __str__(self) -> str:
        return report.text(self)

    def _repr_html_(self) -> str:
        return report.html(self)
