"""The report of ``nbd.export``: which exporter ran, and how the export compares with its source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import _html
from ..provenance import Lineage, Parity


@dataclass(frozen=True)
class ExportReport:
    """What an export did.

    Attributes:
        source: The source model: its class (``"torch.nn.Sequential"``) or file.
        exporter: The exporter that produced the artifact (``"dynamo"``, ``"trace"``,
            ``"skl2onnx 1.19"``, ``"passthrough"``).
        settings: Facts about the export: opset, dynamic batch, call style, and why a
            preferred exporter failed when another one took over.
        parity: The export against its source, or ``None`` when there was none to run.
    """

    source: str
    exporter: str
    settings: Mapping[str, object] = field(default_factory=dict)
    parity: Parity | None = None

    @classmethod
    def of(cls, lineage: Lineage, parity: Parity | None) -> ExportReport:
        """The report of the lineage's last export step."""
        exports = [step for step in lineage.steps if step.kind == "export"]
        detail = dict(exports[-1].detail) if exports else {}
        exporter = str(detail.pop("exporter", "unknown"))
        return cls(lineage.model_class, exporter, detail, parity)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "source": self.source,
            "exporter": self.exporter,
            "settings": dict(self.settings),
            "parity": self.parity.to_dict() if self.parity else None,
        }

    def __str__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        head = f"export: {self.source} by {self.exporter}" + (f" ({settings})" if settings else "")
        parity = f"  parity: {self.parity}" if self.parity else "  parity: not checked"
        return f"{head}\n{parity}"

    def _repr_html_(self) -> str:
        verdict: str = "not checked"
        if self.parity is not None:
            verdict = _html.verdict(self.parity.ok, str(self.parity))
        rows = [("source", self.source), ("exporter", self.exporter),
                *((k, v) for k, v in self.settings.items()), ("parity", verdict)]  # fmt: skip
        return _html.card("Export", _html.fields(rows))
