"""The one place nbdeploy touches onnxruntime's quantization tools (and their files).

onnxruntime's quantizers read and write model files; this adapter gives them a private
temporary folder, and hands back a ``ModelProto``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ConfigError
from .schemes import CalibrationMethod, Int4MatMul, Int8Static

log = logging.getLogger(__name__)

_METHODS = {
    CalibrationMethod.MINMAX: "MinMax",
    CalibrationMethod.ENTROPY: "Entropy",
    CalibrationMethod.PERCENTILE: "Percentile",
}


class _DropPreprocessAdvice(logging.Filter):
    """onnxruntime's quantizer logs advice to the root logger on every call; the advice
    (run its pre-processing script) is about its own CLI workflow, not nbdeploy users'."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root, advice = logging.getLogger(), _DropPreprocessAdvice()
    root.addFilter(advice)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(advice)


# The converter's defaults: its smallest positive and largest finite float16 values.
_FLOAT16_TINY, _FLOAT16_MAX = 5.96e-08, 65504.0


def _folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="nbdeploy-quantize-")


def int8_dynamic(
    model: onnx.ModelProto | Path, target: Path, *, per_channel: bool, exclude: Sequence[str]
) -> None:
    """Dynamic quantization (int8 weights, activations quantized at run time) of a model
    (in memory, or a file whose external data sits beside it) into ``target``, its
    weights in external data: nothing past 2 GiB is ever one protobuf."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _folder() as tmp, _quiet():
        quantize_dynamic(
            _as_file(model, Path(tmp)), target, per_channel=per_channel,
            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
            use_external_data_format=True, reduce_range=True,  # see dynamic.REDUCED_QMAX
        )  # fmt: skip


def _as_file(model: onnx.ModelProto | Path, folder: Path) -> Path:
    if isinstance(model, Path):
        return model
    onnx.save_model(model, folder / "in.onnx")
    return folder / "in.onnx"


def int8_static(
    model: onnx.ModelProto | Path,
    target: Path,
    batches: list[dict[str, np.ndarray]],
    scheme: Int8Static,
    *,
    per_channel: bool,
    exclude: Sequence[str],
) -> None:
    """Static QDQ quantization with activation ranges from ``batches``, file to file as
    :func:`int8_dynamic`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with _folder() as tmp, _quiet():
        quantize_static(
            _as_file(model, Path(tmp)), target, Reader(), quant_format=QuantFormat.QDQ,
            per_channel=per_channel, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
            calibrate_method=getattr(CalibrationMethod, _METHODS[scheme.method]),
            calibration_cache_path=Path(tmp) / "calibration.cache",
            use_external_data_format=True,
        )  # fmt: skip


def float16(model: onnx.ModelProto, *, exclude: Sequence[str]) -> onnx.ModelProto:
    """float16 weights and compute, keeping float32 inputs and outputs.

    Works on a model whose weights are in external data, without reading them: the
    converter changes the type of each weight it converts, and the caller converts the
    data (:func:`to_float16`). The converter reads a weight whole only to learn its
    shape, which the tensor's ``dims`` give; that read is replaced for the call.
    """
    from unittest import mock

    from onnxruntime.transformers import float16 as converter

    with (
        warnings.catch_warnings(),
        mock.patch.object(converter, "make_value_info_from_tensor", _value_info),
    ):
        warnings.simplefilter("ignore")
        converted: Any = converter.convert_float_to_float16(
            model, keep_io_types=True, node_block_list=list(exclude) or None
        )
    if not isinstance(converted, onnx.ModelProto):
        raise ConfigError("onnxruntime's float16 converter returned no model")
    return converted


def to_float16(values: np.ndarray) -> np.ndarray:
    """float32 values as float16 exactly as onnxruntime's converter stores weights:
    values beyond float16's range clamped to its largest, tiny ones kept from flushing
    to zero. The converter's own function makes a dozen passes over the tensor (it took
    two thirds of an fp16 conversion); here one cast does the common case and only the
    values it would change go through the converter's function."""
    from onnxruntime.transformers.float16 import convert_np_to_float16

    with np.errstate(over="ignore"):  # the values that overflow are redone below
        half = values.astype(np.float16)
    magnitude = np.abs(values)
    unusual = np.flatnonzero((magnitude < _FLOAT16_TINY) | (magnitude > _FLOAT16_MAX))
    if unusual.size:
        half.flat[unusual] = convert_np_to_float16(values.flat[unusual])
    return half


def _value_info(tensor: onnx.TensorProto) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))


@contextlib.contextmanager
def _logger_kept(name: str | None, level: int | None = None) -> Iterator[None]:
    """The logger ``name`` (the root for ``None``) as it was once the block ends, at
    ``level`` inside it. Importing onnxruntime's MatMulNBits quantizer calls
    ``logging.basicConfig(level=INFO)``, which would give the user's root logger a
    handler and print a line for every node it quantizes."""
    logger = logging.getLogger(name)
    handlers, before = list(logger.handlers), logger.level
    if level is not None:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(before)


def matmul_nbits(
    model: onnx.ModelProto, scheme: Int4MatMul, *, ops: Sequence[str], exclude: Sequence[str]
) -> onnx.ModelProto:
    """onnxruntime's 4-bit block-wise round-to-nearest quantization (``MatMulNBits``, and
    ``GatherBlockQuantized`` when ``ops`` has Gather) of ``model``, changed in place and
    returned. Nodes named in ``exclude`` stay as they are; the quantizer works in memory
    and writes no files."""
    with _logger_kept(None):
        from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    # Its warnings (the opset raised to 21 for int4 Gather data) are decided by the caller.
    with _quiet(), _logger_kept(nbits.__name__, logging.ERROR):
        quantizer = nbits.MatMulNBitsQuantizer(
            model, bits=4, block_size=scheme.block_size, is_symmetric=scheme.symmetric,
            accuracy_level=scheme.accuracy_level, nodes_to_exclude=list(exclude),
            op_types_to_quantize=tuple(ops),
        )  # fmt: skip
        quantizer.process()
    result = quantizer.model.model
    if not isinstance(result, onnx.ModelProto):
        raise ConfigError("onnxruntime's MatMulNBits quantizer returned no model")
    return result
