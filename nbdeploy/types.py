"""The shared vocabulary: tensor specs, dtypes and the shape of a model's signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

__all__ = ["Dim", "Feed", "Output", "Outputs", "TensorSpec"]

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

# ONNX TensorProto element type -> numpy dtype name. A table, not an if/elif chain.
ONNX_TO_NUMPY: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "object",  # STRING
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


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
