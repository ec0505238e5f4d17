"""Sub-byte storage: 4-bit integers packed two to a byte (ONNX INT4/UINT4, opset 21).

Measured with onnx 1.23 and onnxruntime 1.32 on CPU:

- ``DequantizeLinear`` takes INT4/UINT4 from opset 21, per axis and blocked
  (``block_size``); with ``session.disable_quant_qdq=1`` onnxruntime folds it (and a
  ``Reshape``/``Transpose`` after it) into a float initializer at load.
- ``Cast`` from UINT4 to INT32 feeding ``Gather`` (a k-means codebook lookup) is folded
  at load too, without any session setting.
- INT2/UINT2 exist in onnx 1.23, and onnxruntime 1.32 runs ``DequantizeLinear`` and
  ``Cast`` on them only from opset 25; at opset 21 it rejects the model. nbdeploy stores
  2- and 3-bit values as 4-bit for now (one version converter step, opset 21, for all).

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

__all__ = ["OPSET", "needs_packing", "packed", "upgrade"]

logger = logging.getLogger(__name__)

OPSET = 21  # INT4/UINT4 and blocked DequantizeLinear
_IR_VERSION = 10  # the first IR version with INT4/UINT4
_PACKED_DTYPES: dict[bool, type] = {True: ml_dtypes.int4, False: ml_dtypes.uint4}


def needs_packing(scheme: WeightOnly | KMeans) -> bool:
    """Whether ``scheme`` stores 4-bit values (or blocks), which need opset 21."""
    if isinstance(scheme, KMeans):
        return scheme.k <= 16
    return scheme.bits <= 4 or scheme.block_size is not None


def packed(values: np.ndarray, *, signed: bool, bits: int) -> np.ndarray:
    """``values`` (int8 or uint8 within ``bits``) as int4/uint4 when ``bits`` ≤ 4, which
    ``onnx.numpy_helper.from_array`` writes two to a byte; unchanged otherwise."""
    if bits > 4:
        return values
    return values.astype(_PACKED_DTYPES[signed])


def upgrade(model: onnx.ModelProto) -> None:
    """Raise ``model`` (in place) to opset 21 with onnx's version converter, if lower.

    Raises:
        ConfigError: The converter cannot convert one of the model's ops.
    """
    current = _onnxio.opset(model)
    if current >= OPSET:
        return
    try:
        converted = version_converter.convert_version(model, OPSET)
    except Exception as err:  # the converter raises bare RuntimeErrors from C++
        raise ConfigError(
            f"4-bit storage needs opset {OPSET} and onnx's version converter cannot raise "
            f"this model from opset {current}: {err}. Export with opset={OPSET}, or pick an "
            "8-bit scheme (int8-weight-symmetric, kmeans-<k> with k > 16)."
        ) from err
    converted.ir_version = max(converted.ir_version, _IR_VERSION)
    model.CopyFrom(converted)
    logger.debug("opset %d -> %d for 4-bit storage", current, OPSET)
