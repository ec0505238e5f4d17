"""TensorFlow Serving's REST predict body (``instances`` row format, ``inputs`` columnar
format), as pure functions onto the same :class:`InferRequest` the V2 path uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ProtocolError
from ..types import TensorSpec
from .codecs import InferRequest, dumps, loads

__all__ = ["decode_predict", "encode_predict"]


def decode_predict(body: bytes, inputs: Sequence[TensorSpec]) -> tuple[InferRequest, bool]:
    """The request, and whether it used the row (``instances``) format."""
    try:
        doc = loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"the request is not valid JSON: {err}") from err
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise ProtocolError("the request must be a JSON object with either 'instances' or 'inputs'")
    names = [spec.name for spec in inputs]
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list) or not rows:
            raise ProtocolError("'instances' must be a non-empty list, one entry per example")
        if len(names) == 1 and not all(isinstance(r, dict) for r in rows):
            columns = {names[0]: rows}
        else:
            columns = {n: [_field(r, n) for r in rows] for n in names}
        return InferRequest(_arrays(columns, inputs)), True
    columns = doc["inputs"]
    if not isinstance(columns, dict):
        if len(names) != 1:
            raise ProtocolError(f"'inputs' must be an object keyed by input name: {names}")
        columns = {names[0]: columns}
    return InferRequest(_arrays(columns, inputs)), False


def _field(row: Any, name: str) -> Any:
    if not isinstance(row, dict) or name not in row:
        raise ProtocolError(f"every instance must be an object with input '{name}'")
    return row[name]


def _arrays(columns: dict[str, Any], inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    dtypes = {spec.name: spec.dtype for spec in inputs}
    arrays = {}
    for name, value in columns.items():
        dtype = dtypes.get(name, "float32")
        try:
            arrays[name] = np.asarray(value, dtype=object if dtype == "object" else dtype)
        except (TypeError, ValueError) as err:
            raise ProtocolError(f"input '{name}' is not a regular array of {dtype}: {err}") from err
    return arrays


def encode_predict(outputs: dict[str, np.ndarray], rows: bool) -> bytes:
    """``{"predictions": ...}`` for the row format, ``{"outputs": ...}`` for columnar."""
    values = {name: _plain(array) for name, array in outputs.items()}
    if rows:
        if len(values) == 1:
            doc: dict[str, Any] = {"predictions": next(iter(values.values()))}
        else:
            count = len(next(iter(values.values())))
            doc = {"predictions": [{k: v[i] for k, v in values.items()} for i in range(count)]}
    else:
        doc = {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    return dumps(doc)


def _plain(array: np.ndarray) -> Any:
    if array.dtype.kind == "O":  # strings keep their shape, as bytes become text
        flat = [v.decode() if isinstance(v, bytes) else v for v in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()
