"""Settings of one export, as the framework modules receive them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportOptions:
    """The keyword arguments of :func:`nbdeploy.export`, checked."""

    name: str
    format: str = "onnx"
    opset: int | None = None
    dynamic_batch: bool = True
    atol: float = 1e-4
    rtol: float = 1e-3
    script: bool = False
    exporter_optimize: bool = True
