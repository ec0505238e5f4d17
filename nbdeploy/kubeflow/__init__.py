"""Kubeflow Pipelines: ``nbd.kubeflow.pipeline(...)`` builds a KFP v2 pipeline whose
components do what a notebook does with nbdeploy — export the trained model file,
optimize, quantize, check parity, write a Triton repository and create or update a
KServe ``InferenceService`` (with a canary share).

    >>> p = nbd.kubeflow.pipeline(base_image="registry/nbdeploy:1", name="digits")  # doctest: +SKIP
    >>> kfp.compiler.Compiler().compile(p, "digits.yaml")                           # doctest: +SKIP

Files: ``build`` (the pipeline) and ``kfp_components`` (the KFP components; the only
modules importing kfp, loaded on first use), ``steps`` (each component's work as a plain
function over files), ``sources`` (model files by kind), ``rollout`` (the deploy step as
data) and ``cluster`` (the kubernetes client calls).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import pipeline
    from .kfp_components import components

__all__ = ["components", "pipeline"]

_LAZY = {"pipeline": "build", "components": "kfp_components"}  # no module shares a public name


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nbdeploy.kubeflow' has no attribute {name!r}")
