"""What every step reports about the artifact it made (``art.report``)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["StepReport"]


@runtime_checkable
class StepReport(Protocol):
    """The report of one step (export, optimize, quantize, prune): ``str()`` reads it,
    Jupyter displays it, ``to_dict()`` keeps it.

    Each step has its own report with its own facts (``ExportReport``,
    ``OptimizationReport``, ``QuantizationReport``, ``PruneReport``); tell them apart
    with ``isinstance``.
    """

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        ...

    def _repr_html_(self) -> str:
        """The report as an HTML card, for Jupyter."""
        ...
