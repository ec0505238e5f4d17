"""nbdeploy: from the model in your notebook to a live, versioned inference endpoint.

    >>> import nbdeploy as nbd
    >>> art = nbd.export(model, example, name="digits")   # doctest: +SKIP
    >>> art.parity, art.run(example)                        # doctest: +SKIP

Heavy modules (onnx, onnxruntime, torch, scikit-learn) load on first use, so
``import nbdeploy`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ArtifactError,
    ConfigError,
    ExampleError,
    ExportError,
    MissingDependencyError,
    NbDeployError,
    ParityError,
    UnsupportedModelError,
)
from .types import TensorSpec

if TYPE_CHECKING:
    from .artifact import Artifact, load
    from .export import export
    from .provenance import Lineage, Parity

__version__ = "0.1.0"

# Public name -> module that defines it, imported when first used.
_LAZY = {
    "Artifact": "artifact",
    "load": "artifact",
    "export": "export",
    "Lineage": "provenance",
    "Parity": "provenance",
}

__all__ = [
    "Artifact",
    "ArtifactError",
    "ConfigError",
    "ExampleError",
    "ExportError",
    "Lineage",
    "MissingDependencyError",
    "NbDeployError",
    "Parity",
    "ParityError",
    "TensorSpec",
    "UnsupportedModelError",
    "__version__",
    "export",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbdeploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
