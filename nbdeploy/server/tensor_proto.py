"""TensorFlow's ``TensorProto`` <-> numpy, as pure functions over the message (TF Serving's
gRPC front end, ``tfs_grpc``, is their one caller).

The message is passed in, never built here, so this module needs neither tensorflow nor
its stubs (``tf.make_ndarray`` / ``tf.make_tensor_proto`` would import all of TF's ops).
Decoding takes ``tensor_content`` (raw little-endian bytes: what ``tf.make_tensor_proto``
sends for arrays) as a view, not a copy; else the typed ``*_val`` field, where fewer
values than the shape holds repeat the last one, as TensorFlow reads them. Encoding
always writes ``tensor_content`` (``string_val`` for strings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import ml_dtypes  # noqa: F401 - registers numpy's bfloat16
import numpy as np

from ..errors import ProtocolError
from ..types import TensorSpec

__all__ = [
    "BY_NUMBER", "TF_TYPES", "TensorProto", "TfType", "check_types", "fill", "to_array",
    "type_name",
]  # fmt: skip

TensorProto: TypeAlias = Any  # tensorflow.core.framework.tensor_pb2.TensorProto (no type hints)


@dataclass(frozen=True)
class TfType:
    """One TensorFlow ``DataType`` that the server carries.

    Attributes:
        number: The ``DataType`` enum value (``DT_FLOAT`` is 1).
        name: Its name (``"DT_FLOAT"``).
        field: The ``TensorProto`` field its typed values travel in.
    """

    number: int
    name: str
    field: str


# numpy dtype name (the server's, types.DTYPES; "object" for strings) -> TensorFlow type.
TF_TYPES: dict[str, TfType] = {
    "float32": TfType(1, "DT_FLOAT", "float_val"),
    "float64": TfType(2, "DT_DOUBLE", "double_val"),
    "int32": TfType(3, "DT_INT32", "int_val"),
    "uint8": TfType(4, "DT_UINT8", "int_val"),
    "int16": TfType(5, "DT_INT16", "int_val"),
    "int8": TfType(6, "DT_INT8", "int_val"),
    "object": TfType(7, "DT_STRING", "string_val"),
    "int64": TfType(9, "DT_INT64", "int64_val"),
    "bool": TfType(10, "DT_BOOL", "bool_val"),
    "bfloat16": TfType(14, "DT_BFLOAT16", "half_val"),  # bit patterns, as TF keeps them
    "uint16": TfType(17, "DT_UINT16", "int_val"),
    "float16": TfType(19, "DT_HALF", "half_val"),
    "uint32": TfType(22, "DT_UINT32", "uint32_val"),
    "uint64": TfType(23, "DT_UINT64", "uint64_val"),
}
BY_NUMBER: dict[int, str] = {tf.number: numpy for numpy, tf in TF_TYPES.items()}
# Types a client may send that the server does not carry (named in the refusal).
_OTHERS = {0: "DT_INVALID", 8: "DT_COMPLEX64", 11: "DT_QINT8", 12: "DT_QUINT8",
           13: "DT_QINT32", 15: "DT_QINT16", 16: "DT_QUINT16", 18: "DT_COMPLEX128",
           20: "DT_RESOURCE", 21: "DT_VARIANT"}  # fmt: skip
_BITS = {"float16", "bfloat16"}  # half_val holds their raw bits (as uint16)


def type_name(number: int) -> str:
    """``DT_FLOAT`` for 1, and a readable stand-in for types the server does not carry."""
    numpy = BY_NUMBER.get(number)
    return TF_TYPES[numpy].name if numpy else _OTHERS.get(number, f"DataType {number}")


def to_array(proto: TensorProto, name: str, max_bytes: int) -> np.ndarray:
    """The array a ``TensorProto`` holds (strings as an object array of ``bytes``).

    Args:
        proto: The message.
        name: The input's name, for messages.
        max_bytes: Largest array to build: TensorFlow's short form (one value repeated
            over a shape) could otherwise ask for any size in a few bytes.

    Raises:
        ProtocolError: The type is not one the server carries, the shape is not fully
            defined, the values do not fill it, or it is larger than ``max_bytes``
            (413); the message names the input.
    """
    numpy = BY_NUMBER.get(proto.dtype)
    if numpy is None:
        carried = ", ".join(t.name for t in TF_TYPES.values())
        raise ProtocolError(
            f"input '{name}': {type_name(proto.dtype)} tensors are not served here; "
            f"send one of {carried}"
        )
    shape = _shape(proto, name)
    count = math.prod(shape)
    dtype = np.dtype(numpy)
    if count * dtype.itemsize > max_bytes:
        raise ProtocolError(
            f"input '{name}': shape {shape} of {TF_TYPES[numpy].name} needs "
            f"{count * dtype.itemsize} bytes, more than the server's limit of {max_bytes} "
            "(max_request_bytes); send smaller batches",
            status=413,
        )
    if proto.tensor_content and numpy != "object":
        content: bytes = proto.tensor_content
        if len(content) != count * dtype.itemsize:
            raise ProtocolError(
                f"input '{name}': tensor_content has {len(content)} bytes, but shape {shape} "
                f"of {TF_TYPES[numpy].name} needs {count * dtype.itemsize}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    return _from_values(list(getattr(proto, TF_TYPES[numpy].field)), numpy, shape, name)


def _from_values(values: list[Any], numpy: str, shape: list[int], name: str) -> np.ndarray:
    """Typed values as TensorFlow reads them: fewer than the shape holds repeat the last
    (none: zeros, or empty strings)."""
    count, given = math.prod(shape), len(values)
    if given > count:
        raise ProtocolError(f"input '{name}': {given} values do not fit shape {shape}")
    stored = np.dtype(np.uint16) if numpy in _BITS else np.dtype(numpy)
    flat = np.empty(count, stored)
    try:
        flat[:given] = values
    except (OverflowError, ValueError, TypeError) as err:
        raise ProtocolError(f"input '{name}': values out of range for "
                            f"{TF_TYPES[numpy].name}: {err}") from err  # fmt: skip
    flat[given:] = flat[given - 1] if given else (b"" if numpy == "object" else 0)
    return (flat.view(np.dtype(numpy)) if numpy in _BITS else flat).reshape(shape)


def _shape(proto: TensorProto, name: str) -> list[int]:
    if proto.tensor_shape.unknown_rank:
        raise ProtocolError(f"input '{name}': the tensor's rank is unknown; give its shape")
    shape = [int(d.size) for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise ProtocolError(f"input '{name}': shape {shape} is not fully defined")
    return shape


def fill(proto: TensorProto, array: np.ndarray, name: str) -> None:
    """Write ``array`` into an empty ``TensorProto``: ``tensor_content`` for numbers,
    ``string_val`` for strings (``str`` values as UTF-8).

    Raises:
        ProtocolError: The array's dtype has no TensorFlow type here (409: the model's
            output, not the request, is at fault).
    """
    array = np.asarray(array)
    numpy = "object" if array.dtype.kind in "OSU" else array.dtype.name
    tf = TF_TYPES.get(numpy)
    if tf is None:
        raise ProtocolError(
            f"output '{name}' is {array.dtype}, which has no TensorFlow type here", status=409
        )
    proto.dtype = tf.number
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if numpy == "object":
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)
        )
    else:
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        proto.tensor_content = little.tobytes()


def check_types(inputs: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], model: str) -> None:
    """Refuse an input whose type is not the signature's, in TensorFlow's words (names
    and shapes are the dataplane's to check).

    Raises:
        ProtocolError: Naming the input, both types, and the ``dtype`` to send.
    """
    wanted = {s.name: s.dtype for s in specs}
    for key, array in inputs.items():
        sent = "object" if array.dtype.kind == "O" else array.dtype.name
        expected = wanted.get(key, sent)
        if sent != expected and expected in TF_TYPES:
            raise ProtocolError(
                f"input '{key}' of model '{model}' is {TF_TYPES[sent].name}, but the signature "
                f"takes {TF_TYPES[expected].name}; send tf.make_tensor_proto(value, "
                f"dtype=tf.{'string' if expected == 'object' else expected})"
            )
