"""The float weights that onnxruntime's 4-bit contrib ops hold, read back to measure
what quantizing them cost: ``MatMulNBits`` (per output column, K in blocks of 4-bit
values packed two to a byte, low half first, one scale per block and an optional
packed zero point, 8 when absent) and ``GatherBlockQuantized`` (int4/uint4 tensors of the
table's shape, a scale per block along its quantized axis)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["nibbles", "restore"]


def restore(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> np.ndarray:
    """The float weight a MatMulNBits (K, N) or GatherBlockQuantized node holds."""

    def array(i: int) -> np.ndarray | None:
        name = node.input[i] if len(node.input) > i else ""
        return numpy_helper.to_array(weights[name]) if name else None

    block = _attr(node, "block_size")
    if node.op_type == "MatMulNBits":
        k, n = _attr(node, "K"), _attr(node, "N")
        q, scales, zero = array(1), array(2), array(3)
        assert q is not None and scales is not None
        values = nibbles(q).reshape(n, -1, block).astype(np.float32)
        scales = scales.reshape(n, -1, 1).astype(np.float32)
        offset = 8.0 if zero is None else nibbles(zero)[:, : values.shape[1], None]
        matrix: np.ndarray = ((values - offset) * scales).reshape(n, -1)[:, :k].T
        return matrix
    q, scales, zero = array(0), array(2), array(3)
    assert q is not None and scales is not None
    width = q.shape[1]
    values = q.astype(np.float32)
    scale = np.repeat(scales.astype(np.float32), block, axis=1)[:, :width]
    shift = 0.0 if zero is None else np.repeat(zero.astype(np.float32), block, axis=1)[:, :width]
    restored: np.ndarray = (values - shift) * scale
    return restored


def nibbles(packed: np.ndarray) -> np.ndarray:
    """uint8 bytes as their 4-bit halves, low half first: (..., n) → (..., 2n)."""
    halves = np.stack([packed & 0x0F, packed >> 4], axis=-1)
    return halves.reshape(*packed.shape[:-1], -1)


def _attr(node: onnx.NodeProto, name: str) -> int:
    return next((int(helper.get_attribute_value(a)) for a in node.attribute if a.name == name), 0)
