"""Export in-memory models to an :class:`~nbdeploy.Artifact`, with parity proven.

One module per source framework; the framework is recognised by class name, without
importing it (as netron does), so an absent framework costs nothing.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from .._progress import steps
from ..artifact import Artifact
from ..errors import ConfigError, UnsupportedModelError
from ._options import ExportOptions

__all__ = ["export", "framework_of"]

# Base classes by fully qualified name -> the module of this package that exports them.
_FRAMEWORK_BY_BASE = {
    "torch.nn.modules.module.Module": "torch",
    "sklearn.base.BaseEstimator": "sklearn",
    "onnx.onnx_ml_pb2.ModelProto": "onnx",
    "keras.src.models.model.Model": "tensorflow",  # Keras 3 (tf.keras is Keras 3 too)
    "tensorflow.python.module.module.Module": "tensorflow",
}
# What each format can be exported from, and that framework's name for people.
_FORMATS = {"onnx": None, "torchscript": "torch", "savedmodel": "tensorflow"}
_FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow or Keras"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def framework_of(model: Any) -> str | None:
    """``"torch"``, ``"sklearn"``, ``"tensorflow"`` (Keras models and ``tf.Module``s) or
    ``"onnx"`` for a model object or ``.onnx`` path, else None."""
    if isinstance(model, str | os.PathLike):
        return "onnx" if os.fspath(model).endswith(".onnx") else None
    for cls in type(model).__mro__:
        framework = _FRAMEWORK_BY_BASE.get(f"{cls.__module__}.{cls.__qualname__}")
        if framework:
            return framework
    return None


def export(
    model: Any,
    example: Any = None,
    *,
    name: str | None = None,
    format: Literal["onnx", "torchscript", "savedmodel"] = "onnx",
    opset: int | None = None,
    dynamic_batch: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    script: bool = False,
    exporter_optimize: bool = True,
    progress: bool | None = None,
) -> Artifact:
    """Export a model from memory into an :class:`~nbdeploy.Artifact`, checking parity.

    The source and the export run on ``example`` and on a batch one larger; an output
    beyond tolerance raises :class:`~nbdeploy.ParityError` (which carries the artifact).

    Args:
        model: A ``torch.nn.Module``, a scikit-learn estimator or pipeline, a Keras 3
            model (Sequential, functional or subclassed, on TensorFlow), a ``tf.Module``
            whose ``__call__`` is a ``tf.function`` with an input signature, an
            ``onnx.ModelProto``, or a path to an ``.onnx`` file.
        example: Model input: a tensor or array, a tuple of them (positional inputs), a
            dict of them (keyword inputs, e.g. ``input_ids``/``attention_mask``), or a
            pandas DataFrame for scikit-learn pipelines over columns. Required for
            torch and scikit-learn; optional for ONNX, for Keras models that declare
            their inputs and for ``tf.Module``s (inputs are then made from the signature).
        name: Short name for files and deployments; defaults to the class name.
        format: ``"onnx"``; ``"torchscript"`` for PyTorch models; ``"savedmodel"`` for
            TensorFlow ones (served by Triton's ``tensorflow`` backend or TF Serving).
        opset: ONNX opset to target; the exporter's default when ``None``.
        dynamic_batch: Make the leading dimension of every input and output dynamic.
        atol: Absolute tolerance of the parity check.
        rtol: Relative tolerance of the parity check.
        script: For ``format="torchscript"``: ``torch.jit.script`` instead of tracing.
        exporter_optimize: Let torch's ONNX exporter run its own optimizer (constant
            folding, Conv+BatchNorm fusion). ``False`` keeps the graph as traced, so
            :func:`nbdeploy.optimize` can show each pass at work.
        progress: ``False`` for silence; otherwise a line naming the step (export, parity
            check) appears once the export has run a second.

    Returns:
        The new artifact; ``artifact.parity`` holds the errors measured.

    Raises:
        UnsupportedModelError: ``model`` is not a model nbdeploy knows.
        ExampleError: The example is missing or does not fit the model.
        ExportError: The framework's exporter failed (its error is the ``__cause__``).
        ParityError: The export answers differently from the source.
        MissingDependencyError: The framework's exporter is not installed.
    """
    framework = framework_of(model)
    if framework is None:
        raise UnsupportedModelError(
            f"nbdeploy cannot export a {type(model).__module__}.{type(model).__qualname__}: "
            "pass a torch.nn.Module, a scikit-learn estimator or pipeline, a Keras model, "
            "a tf.Module, an onnx.ModelProto, or the path of an .onnx file.",
            type_name=type(model).__qualname__,
        )
    if format not in _FORMATS:
        raise ConfigError(f"unknown format {format!r}; choose one of {sorted(_FORMATS)}.")
    needed = _FORMATS[format]
    if needed is not None and needed != framework:
        raise ConfigError(
            f"format={format!r} needs a {_FRAMEWORK_NAMES[needed]} model, not a {framework} one."
        )
    name = name or _default_name(model, framework)
    if not _NAME.match(name):
        raise ConfigError(
            f"name {name!r} is not usable: use letters, digits, '_', '.', '-' (max 128), "
            "starting with a letter or digit."
        )
    exporter = importlib.import_module(f"._{framework}", __name__)
    options = ExportOptions(
        name, format, opset, dynamic_batch, atol, rtol, script, exporter_optimize
    )
    with steps(f"export {name}", [f"{framework} export", "check parity"],
               enabled=progress) as job:  # fmt: skip
        job.step(f"{framework} export")
        result: Artifact = exporter.export(model, example, options)
    return result


def _default_name(model: Any, framework: str) -> str:
    if isinstance(model, str | os.PathLike):
        stem = Path(model).name.removesuffix(".onnx")
    elif framework == "onnx":
        stem = model.graph.name or "model"
    elif isinstance(getattr(model, "name", None), str) and model.name:
        stem = re.sub(r"_\d+$", "", model.name)  # a Keras model's name, less Keras's counter
    else:
        stem = type(model).__name__
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cleaned).lower() or "model"
