"""TensorFlow Serving's REST predict body (``instances`` row format, ``inputs`` columnar
format), as pure functions onto the same :class:`InferRequest` the V2 path uses; and what
its REST and gRPC APIs share: version labels and version states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ProtocolError
from ..types import TensorSpec
from .codecs import InferRequest, dumps, loads

__all__ = ["decode_predict", "encode_predict", "label_version", "version_states"]

# TF Serving's ModelVersionStatus.State per repository-index state (Triton's words).
STATES = {"READY": 30, "LOADING": 20, "UNAVAILABLE": 50}  # AVAILABLE, LOADING, END
# Reasons of versions that are not served on purpose (TF Serving's END with an OK status).
NOT_ERRORS = frozenset({"", "unloaded", "not loaded (no traffic)", "loading after a restart"})


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


def label_version(name: str, label: str, traffic: Mapping[str, float]) -> str:
    """The version a TF Serving ``version_label`` names, from the model's traffic split
    (as ``traffic.canary`` makes it): with one version taking traffic, that one is
    ``stable``; with more, the newest is the ``canary`` and ``stable`` the one of the others
    taking the most (the newer on a tie).

    Raises:
        ProtocolError: 404 for a label that names no version now; the message lists those
            that do.
    """
    serving = [int(v) for v, share in traffic.items() if share > 0]
    labels: dict[str, int] = {}
    if len(serving) > 1:
        labels["canary"] = max(serving)
        serving.remove(labels["canary"])
    if serving:
        labels["stable"] = max(serving, key=lambda v: (traffic[str(v)], v))
    if label not in labels:
        known = ", ".join(f"{k} (version {v})" for k, v in labels.items()) or "none"
        raise ProtocolError(
            f"model '{name}' has no version labelled '{label}'; its labels now: {known}. "
            "Labels follow the traffic split: 'stable' and, during a canary, 'canary'",
            status=404,
        )
    return str(labels[label])


def version_states(
    name: str, rows: Sequence[Mapping[str, str]], version: int | None = None
) -> list[tuple[int, int, str]]:
    """``(version, ModelVersionStatus.State, error message)`` per version of ``name`` in
    the repository index (``version``: that one only).

    Raises:
        ProtocolError: 404 when the model, or the version asked for, is not there.
    """
    mine = [row for row in rows if row["name"] == name and row["version"]]
    states = [
        (int(row["version"]), STATES.get(row["state"], 0),
         "" if row["reason"] in NOT_ERRORS else row["reason"])
        for row in mine
        if version is None or int(row["version"]) == version
    ]  # fmt: skip
    if not states:
        which = f"version {version} of model '{name}'" if version is not None else f"model '{name}'"
        raise ProtocolError(f"Could not find any versions of {which}", status=404)
    return states
