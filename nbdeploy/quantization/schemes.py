"""Quantization schemes as typed, frozen configs; strings are shorthands for them."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "CalibrationMethod",
    "Float16",
    "Int4Dynamic",
    "Int4MatMul",
    "Int8Dynamic",
    "Int8Static",
    "KMeans",
    "Scheme",
    "WeightOnly",
    "parse_scheme",
]


class CalibrationMethod(enum.Enum):
    """How static quantization picks activation ranges from calibration data."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclass(frozen=True)
class Int8Dynamic:
    """onnxruntime dynamic quantization: int8 weights, activations quantized per call."""

    name: str = "int8-dynamic"


@dataclass(frozen=True)
class Int4Dynamic:
    """int8 dynamic quantization's graph with 4-bit MatMul/Gemm weights: stored packed as
    ONNX INT4 (one scale per output channel) behind a ``Cast`` to int8 that onnxruntime
    folds when a session loads, so the file is 4-bit and the MatMuls run at int8-dynamic's
    speed (``MatMulInteger``); embeddings stay int8. nbdeploy's own rewrite, for models
    in memory and on disk; it takes MatMul, Gemm and Gather weights (not convolutions)."""

    name: str = "int4-dynamic"


@dataclass(frozen=True)
class Int8Static:
    """onnxruntime static QDQ quantization with activation ranges from calibration data."""

    method: CalibrationMethod = CalibrationMethod.MINMAX
    name: str = "int8-static"


@dataclass(frozen=True)
class Float16:
    """float16 weights and compute; inputs and outputs stay float32."""

    name: str = "fp16"


@dataclass(frozen=True)
class WeightOnly:
    """Weight-only integer quantization, stored as integers + DequantizeLinear.

    Attributes:
        symmetric: ``q = round(x/S)`` if True, else ``q = round(x/S + z)``.
        bits: Bits per value (2-8). 5-8 bits are stored as INT8/UINT8; 3-4 bits packed
            two to a byte as ONNX INT4/UINT4 (opset 21); 2 bits four to a byte as
            INT2/UINT2 (opset 25). The model is converted to that opset.
        block_size: ``None``: one scale per output channel (or per tensor). A number
            (32, 64, 128 are usual): one scale per run of that many input values of each
            output channel (blocked DequantizeLinear, opset 21): less error around
            outliers, for one scale per block.
    """

    symmetric: bool = True
    bits: int = 8
    block_size: int | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ConfigError(f"bits must be between 2 and 8, not {self.bits}.")
        if self.block_size is not None and self.block_size < 2:
            raise ConfigError(f"block_size must be 2 or more (32, 64, 128 are usual), "
                              f"not {self.block_size}; None means per channel.")  # fmt: skip

    @property
    def name(self) -> str:
        """The scheme's short name."""
        kind = "symmetric" if self.symmetric else "asymmetric"
        block = f"-b{self.block_size}" if self.block_size is not None else ""
        return f"int{self.bits}-weight-{kind}{block}"


@dataclass(frozen=True)
class KMeans:
    """Weights clustered into ``k`` centroids: indices + a float codebook.

    Indices are UINT2 (four to a byte, opset 25) for ``k`` ≤ 4, UINT4 (two to a byte,
    opset 21) for ``k`` ≤ 16, else UINT8.
    """

    k: int = 16

    @property
    def name(self) -> str:
        """The scheme's short name."""
        return f"kmeans-{self.k}"


@dataclass(frozen=True)
class Int4MatMul:
    """onnxruntime's 4-bit weight-only ``MatMulNBits``: each constant MatMul (and Gemm)
    weight stored as 4-bit blocks along K with one scale per block, multiplied by a
    kernel that never materialises the float weight. Embedding ``Gather`` weights become
    ``GatherBlockQuantized`` (``embeddings=True``).

    Attributes:
        block_size: Values per scale along K: 16, 32, 64, 128 or 256 (smaller: more
            accurate, more scales to store).
        symmetric: ``q = round(x/S)`` if True, else with a 4-bit zero point per block.
        accuracy_level: The kernel's compute type: ``None`` (onnxruntime's default),
            1 float32, 2 float16, 3 bfloat16, 4 int8 (activations quantized per block;
            the fastest on x86 CPUs).
        embeddings: Also store Gather embedding tables in 4 bits.
    """

    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int | None = None
    embeddings: bool = True

    def __post_init__(self) -> None:
        if self.accuracy_level == 0:  # onnxruntime's "unset": one config per behaviour
            object.__setattr__(self, "accuracy_level", None)
        if self.block_size not in _BLOCK_SIZES:
            sizes = ", ".join(map(str, _BLOCK_SIZES))
            raise ConfigError(f"int4-matmul block_size {self.block_size}: choose {sizes}.")
        if self.accuracy_level not in (None, 0, 1, 2, 3, 4):
            raise ConfigError(
                f"int4-matmul accuracy_level {self.accuracy_level}: choose None, 1 (float32), "
                "2 (float16), 3 (bfloat16) or 4 (int8)."
            )

    @property
    def name(self) -> str:
        """The scheme's short name: ``int4-matmul`` plus what differs from the defaults."""
        parts = ["int4-matmul"]
        if self.block_size != 32:
            parts.append(f"b{self.block_size}")
        if not self.symmetric:
            parts.append("asym")
        if self.accuracy_level:
            parts.append(f"acc{self.accuracy_level}")
        if not self.embeddings:
            parts.append("noembed")
        return "-".join(parts)


_BLOCK_SIZES = (16, 32, 64, 128, 256)
Scheme = Int8Dynamic | Int4Dynamic | Int8Static | Float16 | WeightOnly | KMeans | Int4MatMul

_BY_NAME: dict[str, Scheme] = {
    "int8-dynamic": Int8Dynamic(),
    "int4-dynamic": Int4Dynamic(),
    "int8-static": Int8Static(),
    "fp16": Float16(),
    "int8-weight-symmetric": WeightOnly(symmetric=True),
    "int8-weight-asymmetric": WeightOnly(symmetric=False),
}
NAMES = (
    *_BY_NAME,
    "intN-weight-symmetric",
    "intN-weight-asymmetric",
    "intN-weight-symmetric-b<block>",
    "kmeans-<k>",
    "int4-matmul[-b<block>][-asym][-acc<level>][-noembed]",
)
# One of each family, for menus and demos (``NAMES`` has the patterns).
CHOICES = (*_BY_NAME, "kmeans-16")
_WEIGHT = re.compile(r"^int([2-8])-weight-(symmetric|asymmetric)(?:-b(\d+))?$")
_KMEANS = re.compile(r"^kmeans-(\d+)$")
_MATMUL = re.compile(r"^int4-matmul(?:-b(\d+))?(-asym)?(?:-acc(\d))?(-noembed)?$")


def parse_scheme(scheme: str | Scheme) -> Scheme:
    """The config for a scheme name (``"int8-static"``, ``"kmeans-16"``, ``"int4-weight-…"``,
    ``"int4-weight-symmetric-b32"`` for blocks of 32, ``"int4-matmul-b128-acc4"``).

    Raises:
        ConfigError: An unknown name; the message lists the valid ones.
    """
    if not isinstance(scheme, str):
        return scheme
    if scheme in _BY_NAME:
        return _BY_NAME[scheme]
    if match := _WEIGHT.match(scheme):
        block = int(match.group(3)) if match.group(3) else None
        return WeightOnly(match.group(2) == "symmetric", int(match.group(1)), block)
    if (match := _KMEANS.match(scheme)) and 2 <= int(match.group(1)) <= 256:
        return KMeans(int(match.group(1)))
    if match := _MATMUL.match(scheme):
        size, asym, level, noembed = match.groups()
        return Int4MatMul(block_size=int(size or 32), symmetric=not asym,
                          accuracy_level=int(level) if level else None,
                          embeddings=not noembed)  # fmt: skip
    raise ConfigError(
        f"unknown quantization scheme {scheme!r}; the schemes are: {', '.join(NAMES)}."
    )
