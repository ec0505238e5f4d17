"""TensorFlow fenced in one module: importing it quietly, and SavedModels — write, read,
run — through their ``serving_default`` signature.

This sits below :mod:`nbdeploy.payloads` (the exporters build on it too), so an artifact
reads, runs and writes its SavedModel without reaching up into the exporters. TensorFlow
is imported lazily, here only: ``import nbdeploy`` never pays for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ._deps import require
from .errors import ArtifactError
from .types import BATCH, BY_NUMPY, Outputs, TensorSpec

SIGNATURE = "serving_default"
META_FILE = Path("assets.extra") / "nbdeploy.json"  # where TF Serving keeps extra files too


def tensorflow(feature: str) -> Any:
    """The ``tensorflow`` module, imported on first use without its C++ start-up notices
    (oneDNN, CPU features) unless the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    module: ModuleType = require("tensorflow", extra="tensorflow", feature=feature)
    return module


def keras(feature: str) -> Any:
    """The ``keras`` module (Keras 3, on TensorFlow), imported as quietly as TensorFlow."""
    tensorflow(feature)
    module: ModuleType = require("keras", extra="tensorflow", feature=feature)
    return module


def tensor_spec(spec: TensorSpec, *, batch: bool) -> Any:
    """A ``tf.TensorSpec`` for one of our specs; a dynamic batch dimension stays ``None``."""
    tf = tensorflow("Describing a TensorFlow signature")
    shape = [None if (axis == 0 and batch) or not isinstance(d, int) else d
             for axis, d in enumerate(spec.shape)]  # fmt: skip
    dtype = tf.string if spec.dtype == "object" else tf.as_dtype(spec.dtype)
    return tf.TensorSpec(shape, dtype, name=spec.name)


def spec_of(name: str, tf_spec: Any, *, batch: bool) -> TensorSpec:
    """Our spec for a ``tf.TensorSpec``; an unknown leading dimension is the batch."""
    dims = tf_spec.shape.as_list() if tf_spec.shape.rank is not None else []
    shape: list[int | str | None] = [d if d is not None else None for d in dims]
    if shape and shape[0] is None and batch:
        shape[0] = BATCH
    dtype = "object" if tf_spec.dtype.name == "string" else tf_spec.dtype.as_numpy_dtype.__name__
    return TensorSpec(name, dtype if dtype in BY_NUMPY else "unknown", tuple(shape))


def to_numpy(value: Any) -> np.ndarray:
    """A TensorFlow tensor's value as numpy (strings as an object array of bytes)."""
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    return array.astype(object) if array.dtype.kind == "S" else array


def write(
    folder: Path,
    serve: Callable[..., Mapping[str, Any]],
    inputs: Sequence[TensorSpec],
    track: Any,
    *,
    keras_model: bool,
) -> None:
    """Write a SavedModel whose ``serving_default`` signature calls ``serve`` on positional
    tensors named and typed as ``inputs`` and returns its outputs by name.

    Args:
        folder: The SavedModel folder to create.
        serve: The function to export; it returns ``{output name: tensor}``.
        inputs: The signature's inputs, in ``serve``'s argument order.
        track: What owns the variables (the Keras model, or the ``tf.Module``).
        keras_model: Write through Keras's ``ExportArchive`` (which tracks a Keras
            model's variables as Keras expects) instead of ``tf.saved_model.save``.
    """
    tf = tensorflow("Writing a SavedModel")
    signature = [tensor_spec(spec, batch=spec.has_dynamic_batch) for spec in inputs]
    if keras_model:
        archive = keras("Writing a SavedModel").export.ExportArchive()
        archive.track(track)
        archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=signature)
        archive.write_out(str(folder), verbose=False)
        return
    function = tf.function(serve, input_signature=signature, autograph=False)
    tf.saved_model.save(track, str(folder), signatures={SIGNATURE: function})


class Signature:
    """A loaded SavedModel's ``serving_default`` signature, called with numpy feeds."""

    def __init__(self, folder: Path) -> None:
        tf = tensorflow("Loading a SavedModel")
        try:
            self._loaded = tf.saved_model.load(str(folder))
        except Exception as err:  # TensorFlow's own error types, many of them
            raise ArtifactError(f"TensorFlow cannot load the SavedModel '{folder}': {err}") from err
        signatures = dict(self._loaded.signatures)
        if SIGNATURE not in signatures:
            raise ArtifactError(
                f"the SavedModel at '{folder}' has no '{SIGNATURE}' signature (it has "
                f"{sorted(signatures) or 'none'}); save it with one, e.g. "
                f"tf.saved_model.save(module, path, signatures={{'{SIGNATURE}': fn}})."
            )
        self._function = signatures[SIGNATURE]
        self._tf = tf

    def specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Inputs and outputs as the signature declares them (inputs sorted by name: a
        signature keeps no order of its own)."""
        ins = self._function.structured_input_signature[1]
        outs = self._function.structured_outputs
        return (
            tuple(spec_of(k, ins[k], batch=True) for k in sorted(ins)),
            tuple(spec_of(k, v, batch=True) for k, v in outs.items()),
        )

    def __call__(self, feed: Mapping[str, np.ndarray]) -> Outputs:
        tensors = {k: self._tf.constant(v) for k, v in feed.items()}
        try:
            result = self._function(**tensors)
        except Exception as err:  # TensorFlow's own error types, many of them
            raise ArtifactError(f"TensorFlow could not run the SavedModel: {err}") from err
        return {name: to_numpy(value) for name, value in result.items()}


def read_meta(folder: Path) -> dict[str, str]:
    """The nbdeploy metadata a SavedModel folder carries (none for foreign ones)."""
    path = folder / META_FILE
    if not path.is_file():
        return {}
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as err:
        raise ArtifactError(f"'{folder}' has unreadable nbdeploy metadata: {err}") from err


def write_meta(folder: Path, meta: Mapping[str, str]) -> None:
    """Store nbdeploy's metadata inside a SavedModel folder, where TensorFlow ignores it."""
    path = folder / META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(meta)))


def is_savedmodel(path: Path) -> bool:
    """Whether ``path`` is a SavedModel folder."""
    return path.is_dir() and (path / "saved_model.pb").is_file()
