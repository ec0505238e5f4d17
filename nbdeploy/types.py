"""The shared vocabulary: tensor specs, dtypes and the shape of a model's signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

__all__ = ["DTYPES", "DType", "Dim", "Feed", "Output", "Outputs", "TensorSpec"]

Dim: TypeAlias = int | str | None
"""One dimension: a fixed size, a symbolic name such as ``"batch"``, or unknown."""

Feed: TypeAlias = Mapping[str, Any]
"""Inputs by name, as arrays or anything ``np.asarray`` accepts."""

Outputs: TypeAlias = dict[str, np.ndarray]
"""Outputs by name."""

Output: TypeAlias = np.ndarray | list[Any] | dict[Any, Any]
"""One output of a model run: an array for a tensor, a list for a sequence (of arrays,
or of dicts for ZipMap's sequence of maps), a dict for a map."""

BATCH = "batch"
"""The symbolic name nbdeploy gives a dynamic leading dimension."""


@dataclass(frozen=True)
class DType:
    """One element type under each of the names the stack uses for it.

    Attributes:
        numpy: numpy's name (``"float32"``; ``"object"`` for strings).
        onnx: ONNX's ``TensorProto`` element type number.
        v2: The KServe V2 / Triton datatype (``"FP32"``, ``"BYTES"``).
        ort: onnxruntime's type string (``"tensor(float)"``).
        config: Triton's model-config type (``"TYPE_FP32"``, ``"TYPE_STRING"``).
    """

    numpy: str
    onnx: int
    v2: str
    ort: str

    @property
    def config(self) -> str:
        return "TYPE_STRING" if self.v2 == "BYTES" else f"TYPE_{self.v2}"


# The one dtype table: every other mapping is derived from it.
DTYPES: tuple[DType, ...] = (
    DType("float32", 1, "FP32", "tensor(float)"),
    DType("uint8", 2, "UINT8", "tensor(uint8)"),
    DType("int8", 3, "INT8", "tensor(int8)"),
    DType("uint16", 4, "UINT16", "tensor(uint16)"),
    DType("int16", 5, "INT16", "tensor(int16)"),
    DType("int32", 6, "INT32", "tensor(int32)"),
    DType("int64", 7, "INT64", "tensor(int64)"),
    DType("object", 8, "BYTES", "tensor(string)"),
    DType("bool", 9, "BOOL", "tensor(bool)"),
    DType("float16", 10, "FP16", "tensor(float16)"),
    DType("float64", 11, "FP64", "tensor(double)"),
    DType("uint32", 12, "UINT32", "tensor(uint32)"),
    DType("uint64", 13, "UINT64", "tensor(uint64)"),
    DType("bfloat16", 16, "BF16", "tensor(bfloat16)"),
)
BY_NUMPY = {d.numpy: d for d in DTYPES}
BY_ONNX = {d.onnx: d for d in DTYPES}
BY_V2 = {d.v2: d for d in DTYPES}
BY_ORT = {d.ort: d for d in DTYPES}
ONNX_TO_NUMPY: dict[int, str] = {d.onnx: d.numpy for d in DTYPES}


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one model input or output.

    Attributes:
        name: The tensor's name in the graph.
        dtype: A numpy dtype name (``"float32"``, ``"int64"``, ``"object"`` for strings).
        shape: One entry per dimension: an int, a symbolic name or ``None``.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def has_dynamic_batch(self) -> bool:
        """True when the leading dimension is not fixed."""
        return bool(self.shape) and not isinstance(self.shape[0], int)

    @property
    def shape_text(self) -> str:
        """The shape as text, unknown dimensions as ``?``: ``[batch, 3, ?]``."""
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}{self.shape_text}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        """The inverse of :meth:`to_dict`."""
        return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]))


def specs_from_onnx(values: Sequence[Any]) -> tuple[TensorSpec, ...]:
    """TensorSpecs of ONNX ``ValueInfoProto`` s (graph inputs or outputs)."""
    specs = []
    for value in values:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            specs.append(TensorSpec(value.name, kind or "unknown", ()))
            continue
        tensor = value.type.tensor_type
        dims: list[Dim] = []
        for dim in tensor.shape.dim:
            which = dim.WhichOneof("value")
            dims.append(dim.dim_value if which == "dim_value" else dim.dim_param or None)
        specs.append(
            TensorSpec(value.name, ONNX_TO_NUMPY.get(tensor.elem_type, "unknown"), tuple(dims))
        )
    return tuple(specs)
