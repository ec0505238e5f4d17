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
from .schemes import CalibrationMethod, Int8Static

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


def _folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="nbdeploy-quantize-")


def int8_dynamic(
    model: onnx.ModelProto, *, per_channel: bool, exclude: Sequence[str]
) -> onnx.ModelProto:
    """Dynamic quantization (int8 weights, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _folder() as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save_model(model, source)
        with _quiet():
            quantize_dynamic(
                source, target, per_channel=per_channel, weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude),
            )  # fmt: skip
        return onnx.load(target)


def int8_static(
    model: onnx.ModelProto,
    batches: list[dict[str, np.ndarray]],
    scheme: Int8Static,
    *,
    per_channel: bool,
    exclude: Sequence[str],
) -> onnx.ModelProto:
    """Static QDQ quantization with activation ranges from ``batches``."""
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

    with _folder() as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save_model(model, source)
        with _quiet():
            quantize_static(
                source, target, Reader(), quant_format=QuantFormat.QDQ,
                per_channel=per_channel, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                calibrate_method=getattr(CalibrationMethod, _METHODS[scheme.method]),
                calibration_cache_path=Path(tmp) / "calibration.cache",
            )  # fmt: skip
        return onnx.load(target)


def float16(model: onnx.ModelProto, *, exclude: Sequence[str]) -> onnx.ModelProto:
    """float16 weights and compute, keeping float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted: Any = convert_float_to_float16(
            model, keep_io_types=True, node_block_list=list(exclude) or None
        )
    if not isinstance(converted, onnx.ModelProto):
        raise ConfigError("onnxruntime's float16 converter returned no model")
    return converted
