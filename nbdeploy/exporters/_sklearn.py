"""scikit-learn estimators and pipelines → ONNX through skl2onnx.

Classifiers export two tensors, ``label`` and ``probabilities`` (ZipMap is turned off
so every runtime and server can carry them). A numpy example becomes one input ``X``;
a pandas DataFrame becomes one ``[batch, 1]`` input per column, which is what
``ColumnTransformer`` pipelines over mixed columns need.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _onnxio
from .._deps import require
from ..artifact import Artifact
from ..errors import ConfigError, ExampleError, ExportError
from ..provenance import Lineage
from ..types import BATCH, Outputs, TensorSpec
from ._options import ExportOptions
from ._parity import verify
from .report import ExportReport

Feed = dict[str, np.ndarray]

# numpy kind -> skl2onnx tensor type name; float64 data are served as float32, as
# skl2onnx's converters expect.
_TYPE_BY_KIND = {
    "f": "FloatTensorType",
    "i": "Int64TensorType",
    "u": "Int64TensorType",
    "b": "BooleanTensorType",
    "O": "StringTensorType",
    "U": "StringTensorType",
}
_DTYPE_BY_KIND = {
    "f": np.float32,
    "i": np.int64,
    "u": np.int64,
    "b": np.bool_,
    "O": np.str_,
    "U": np.str_,
}


def export(model: Any, example: Any, options: ExportOptions) -> Artifact:
    """Export a scikit-learn estimator; see :func:`nbdeploy.export`."""
    skl2onnx = require("skl2onnx", extra="sklearn", feature="Exporting a scikit-learn model")
    import sklearn

    if example is None:
        raise ExampleError(
            "pass example= a few rows of the data the model was fitted on "
            "(a 2-D array, or the DataFrame for pipelines over named columns)."
        )
    feed, rebuild = _feed_and_rebuild(example)
    initial_types = [(k, _tensor_type(skl2onnx, v)) for k, v in feed.items()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skl2onnx's own deprecation chatter
            proto = skl2onnx.to_onnx(
                model,
                initial_types=initial_types,
                target_opset=options.opset,
                options=_no_zipmap(model),
                name=options.name,
            )
    except Exception as err:
        raise ExportError(
            f"skl2onnx could not convert {type(model).__name__}: {type(err).__name__}: {err}. "
            "Check that every step of the pipeline has a skl2onnx converter (and its "
            "options, e.g. VotingClassifier(flatten_transform=False)).",
            operator=type(model).__name__,
        ) from err
    _onnxio.name_batch_dim(proto, BATCH)
    lineage = Lineage(
        "sklearn", sklearn.__version__, f"{type(model).__module__}.{type(model).__qualname__}"
    )
    lineage = lineage.then(
        "export", exporter=f"skl2onnx {skl2onnx.__version__}", opset=_onnxio.opset(proto)
    )
    art = Artifact.from_onnx(proto, name=options.name, lineage=lineage, example=feed)
    reference = _reference(model, rebuild, art.outputs)
    parity = verify(
        art,
        reference,
        feed,
        reference_name=f"scikit-learn {sklearn.__version__}",
        dynamic_batch=options.dynamic_batch,
        atol=options.atol,
        rtol=options.rtol,
    )
    return dataclasses.replace(art, parity=parity, report=ExportReport.of(lineage, parity))


def source_reference(
    model: Any, example: Any, outputs: tuple[TensorSpec, ...]
) -> Callable[[Feed], Outputs]:
    """Run the estimator itself on a feed, its results named like the export's ``outputs``
    (what the parity check compares with; also for checks after later steps)."""
    _, rebuild = _feed_and_rebuild(example)
    return _reference(model, rebuild, outputs)


def _feed_and_rebuild(example: Any) -> tuple[Feed, Callable[[Feed], Any]]:
    """The ONNX feed for the example, and how to turn a feed back into sklearn's input."""
    if hasattr(example, "columns") and hasattr(example, "dtypes"):  # a pandas DataFrame
        import pandas as pd

        columns = list(example.columns)
        feed = {str(c): _column(example[c].to_numpy()) for c in columns}
        dtypes = example.dtypes.to_dict()
        return feed, lambda f: pd.DataFrame({c: f[str(c)][:, 0] for c in columns}).astype(dtypes)
    array = np.asarray(example)
    if array.ndim != 2:
        raise ExampleError(
            f"a scikit-learn example must be 2-D (rows × features), got shape {array.shape}; "
            "for one row use x.reshape(1, -1)."
        )
    if array.dtype.kind not in _DTYPE_BY_KIND:
        raise ExampleError(f"example dtype {array.dtype} is not supported; use numbers or strings.")
    original = array.dtype
    feed = {"X": array.astype(_DTYPE_BY_KIND[array.dtype.kind])}
    return feed, lambda f: f["X"].astype(original)


def _column(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind not in _DTYPE_BY_KIND:
        raise ExampleError(f"column dtype {values.dtype} is not supported; use numbers or strings.")
    return values.astype(_DTYPE_BY_KIND[kind]).reshape(-1, 1)


def _tensor_type(skl2onnx: Any, array: np.ndarray) -> Any:
    types = skl2onnx.common.data_types
    return getattr(types, _TYPE_BY_KIND[array.dtype.kind])([None, *array.shape[1:]])


def _no_zipmap(model: Any) -> dict[int, dict[str, bool]]:
    """Ask every classifier in the model for plain tensors, not ZipMap's list of dicts."""
    from sklearn.base import is_classifier

    return {id(est): {"zipmap": False} for est in _estimators(model) if is_classifier(est)}


def _estimators(model: Any) -> list[Any]:
    found = [model]
    for attr in ("steps", "transformer_list", "transformers", "estimators"):
        for item in getattr(model, attr, None) or []:
            inner = item[1] if isinstance(item, tuple) else item
            if hasattr(inner, "fit"):
                found += _estimators(inner)
    return found


def _reference(
    model: Any, rebuild: Callable[[Feed], Any], outputs: tuple[TensorSpec, ...]
) -> Callable[[Feed], Outputs]:
    methods = _methods(model, len(outputs))

    def run(feed: Feed) -> Outputs:
        data = rebuild(feed)
        result = {}
        for spec, method in zip(outputs, methods, strict=True):
            value = np.asarray(getattr(model, method)(data))
            # skl2onnx returns regressions as [batch, 1] where sklearn gives [batch].
            result[spec.name] = (
                value.reshape(-1, 1) if value.ndim == 1 and spec.rank == 2 else value
            )
        return result

    return run


def _methods(model: Any, count: int) -> list[str]:
    """The sklearn methods whose results the ONNX outputs hold, in output order."""
    if count == 2 and hasattr(model, "predict_proba"):
        return ["predict", "predict_proba"]
    if count == 2 and hasattr(model, "decision_function"):
        return ["predict", "decision_function"]
    if count == 1 and hasattr(model, "predict"):
        return ["predict"]
    if count == 1 and hasattr(model, "transform"):
        return ["transform"]
    raise ConfigError(
        f"nbdeploy does not know which {type(model).__name__} methods its {count} ONNX outputs "
        "hold; export the estimator's ONNX with skl2onnx and pass the ModelProto instead."
    )
