"""The real Triton for tests: nbdeploy's own harness around the nvidia-pytriton wheel."""

from __future__ import annotations

from pathlib import Path

import nbdeploy as nbd
from nbdeploy.triton.local import running, unavailable_reason
from nbdeploy.triton.model_folder import write_version

__all__ = ["running", "unavailable_reason", "write_onnx_python_model"]


def write_onnx_python_model(repository: Path, name: str, art: nbd.Artifact) -> None:
    """``name`` version 1 as a Python-backend model running onnxruntime (the only way
    this Triton build serves ONNX)."""
    write_version(repository, art, name=name, backend="python")
