"""Sub-byte storage: 4-bit integers packed two to a byte (ONNX INT4/UINT4, opset 21) and
2-bit ones four to a byte (INT2/UINT2, opset 25).

Measured with onnx 1.23 and onnxruntime 1.32 on CPU:

- ``DequantizeLinear`` takes INT4/UINT4 from opset 21, per axis and blocked
  (``block_size``); with ``session.disable_quant_qdq=1`` onnxruntime folds it (and a
  ``Reshape``/``Transpose`` after it) into a float initializer at load.
- ``Cast`` from UINT4 to INT32 feeding ``Gather`` (a k-means codebook lookup) is folded
  at load too, without any session setting.
- INT2/UINT2 exist in onnx 1.23, and onnxruntime 1.32 runs (and folds the same way)
  ``DequantizeLinear`` and ``Cast`` on them from opset 25; at opset 21 it rejects the
  model. So 2-bit values (``int2-…``, ``kmeans-<k>`` with k ≤ 4) are stored as INT2/UINT2
  in a model raised to opset 25, and 3- and 4-bit ones as INT4/UINT4 at opset 21.

Raising the opset is done by onnx's version converter, never by editing the opset
import alone: opset 18 moved ``axes`` of the Reduce ops and ``Split`` from attributes to
inputs, so a bare bump would make such models invalid.
"""

from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import onnx
from onnx import version_converter

from .. import _onnxio
from ..errors import ConfigError
from .schemes import KMeans, WeightOnly

__all__ = ["OPSET", "needs_packing", "packed", "raise_opset", "storage_bits", "upgrade"]

logger = logging.getLogger(__name__)

OPSET = 21  # INT4/UINT4 and blocked DequantizeLinear
# storage bits -> (opset, IR version) that first have their types
_NEEDS: dict[int, tuple[int, int]] = {4: (OPSET, 10), 2: (25, 11)}
# (storage bits, signed) -> numpy type that onnx.numpy_helper packs
_PACKED_DTYPES: dict[tuple[int, bool], type] = {
    (4, True): ml_dtypes.int4, (4, False): ml_dtypes.uint4,
    (2, True): ml_dtypes.int2, (2, False): ml_dtypes.uint2,
}  # fmt: skip


def storage_bits(bits: int) -> int:
    """The container a ``bits``-bit value is stored in: 2, 4 or 8 bits."""
    return 2 if bits <= 2 else 4 if bits <= 4 else 8


def needs_packing(scheme: WeightOnly | KMeans) -> bool:
    """Whether ``scheme`` stores sub-byte values (or blocks), which need opset 21 or 25."""
    return _bits(scheme) < 8 or (isinstance(scheme, WeightOnly) and scheme.block_size is not None)


def _bits(scheme: WeightOnly | KMeans) -> int:
    bits = scheme.bits if isinstance(scheme, WeightOnly) else (scheme.k - 1).bit_length()
    return storage_bits(bits)


def packed(values: np.ndarray, *, signed: bool, bits: int) -> np.ndarray:
    """``values`` (int8 or uint8 within ``bits``) as int2/uint2 or int4/uint4, which
    ``onnx.numpy_helper.from_array`` writes four or two to a byte; 8 bits unchanged."""
    container = storage_bits(bits)
    if container == 8:
        return values
    return values.astype(_PACKED_DTYPES[container, signed])


def upgrade(model: onnx.ModelProto, scheme: WeightOnly | KMeans) -> None:
    """Raise ``model`` (in place) with onnx's version converter to the opset ``scheme``'s
    storage needs (21 for 4 bits and blocks, 25 for 2 bits), if lower.

    Raises:
        ConfigError: The converter cannot convert one of the model's ops.
    """
    raise_opset(model, _bits(scheme), scheme.name)


def raise_opset(model: onnx.ModelProto, bits: int, scheme: str) -> None:
    """Raise ``model`` (in place) to the opset that stores ``bits``-bit integers (21 for
    4 bits, 25 for 2 bits), if lower; ``scheme`` names what needs it in the error.

    Raises:
        ConfigError: The converter cannot convert one of the model's ops.
    """
    opset, ir_version = _NEEDS[min(storage_bits(bits), 4)]
    current = _onnxio.opset(model)
    if current >= opset:
        return
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as err:  # the converter raises bare RuntimeErrors from C++
        raise ConfigError(
            f"{scheme} is stored in types of opset {opset} and onnx's version converter "
            f"cannot raise this model from opset {current}: {err}. Export with "
            f"opset={opset}, or pick an 8-bit scheme (int8-weight-symmetric, kmeans-<k> "
            "with k > 16)."
        ) from err
    converted.ir_version = max(converted.ir_version, ir_version)
    model.CopyFrom(converted)
    logger.debug("opset %d -> %d for %s", current, opset, scheme)
