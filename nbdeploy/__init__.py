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

from ._version import __version__
from .errors import (
    ArtifactError,
    ConfigError,
    DamagedFileError,
    ExampleError,
    ExportError,
    MissingDependencyError,
    NbDeployError,
    OptimizationError,
    ParityError,
    ProtocolError,
    PushError,
    ServerError,
    TritonUnavailableError,
    UnsupportedModelError,
    VirtualenvError,
)
from .types import TensorSpec

if TYPE_CHECKING:
    from .artifact import Artifact, load
    from .bench.compare import compare
    from .bench.results import Comparison
    from .deploy.manifests import Manifests, manifests
    from .deployment import Deployment, deployments, serve
    from .exporters import export
    from .graph.activations import ActivationReport, activations
    from .graph.diff import GraphDiff, diff
    from .graph.inspect import GraphSummary, inspect
    from .graph.optimize import optimize
    from .graph.show import show
    from .notebook.studio import studio
    from .provenance import Lineage, Parity
    from .quantization import quantize
    from .quantization.prune import prune
    from .triton.push import PushResult, push

# Public name -> module that defines it, imported when first used.
_LAZY = {
    "Artifact": "artifact",
    "load": "artifact",
    "export": "exporters",
    "Lineage": "provenance",
    "Parity": "provenance",
    "inspect": "graph.inspect",
    "GraphSummary": "graph.inspect",
    "diff": "graph.diff",
    "GraphDiff": "graph.diff",
    "activations": "graph.activations",
    "ActivationReport": "graph.activations",
    "optimize": "graph.optimize",
    "show": "graph.show",
    "quantize": "quantization",
    "prune": "quantization.prune",
    "compare": "bench.compare",
    "Comparison": "bench.results",
    "serve": "deployment",
    "deployments": "deployment",
    "Deployment": "deployment",
    "push": "triton.push",
    "PushResult": "triton.push",
    "manifests": "deploy.manifests",
    "studio": "notebook.studio",
    "Manifests": "deploy.manifests",
}
_SUBMODULES = {"server", "kubeflow"}  # namespaces: nbd.server.start(), nbd.kubeflow.pipeline()

__all__ = [
    "ActivationReport",
    "Artifact",
    "ArtifactError",
    "Comparison",
    "ConfigError",
    "DamagedFileError",
    "Deployment",
    "ExampleError",
    "ExportError",
    "GraphDiff",
    "GraphSummary",
    "Lineage",
    "Manifests",
    "MissingDependencyError",
    "NbDeployError",
    "OptimizationError",
    "Parity",
    "ParityError",
    "ProtocolError",
    "PushError",
    "PushResult",
    "ServerError",
    "TensorSpec",
    "TritonUnavailableError",
    "UnsupportedModelError",
    "VirtualenvError",
    "__version__",
    "activations",
    "compare",
    "deployments",
    "diff",
    "export",
    "inspect",
    "kubeflow",
    "load",
    "manifests",
    "optimize",
    "prune",
    "push",
    "quantize",
    "serve",
    "server",
    "show",
    "studio",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbdeploy``: registers ``%deploy`` / ``%%deploy`` (idempotent)."""
    from .notebook.magics import NbDeployMagics

    if any(isinstance(c, NbDeployMagics) for c in ipython.configurables):
        return
    magics = NbDeployMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)  # so %config NbDeployMagics.<trait> = ... works


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nbdeploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
