"""The quantization maths, pure numpy: symmetric, asymmetric and k-means.

Symmetric:  ``S = max|x| / (2^(n-1) − 1)``, ``q = round(x / S)``, ``x̂ = q·S``.
Asymmetric: ``q = round(x / S + z)`` clipped to ``[0, 2^n − 1]``, ``x̂ = (q − z)·S``, with
``S`` and ``z`` chosen to minimise the reconstruction error ``‖x − x̂‖²``: the range
``[lo, hi]`` is searched between the tensor's min/max and tighter clips of it.
K-means:    the values are clustered into ``k`` centroids (Lloyd's algorithm from
quantile seeds, so the result is deterministic); ``x̂ = codebook[index]``.

Per-channel variants work along one axis (the output channel of a weight). Block-wise
variants (ONNX's blocked ``DequantizeLinear``) give each run of ``block_size`` values
along one axis its own scale: the scale has the tensor's shape with that axis
``ceil(n / block_size)`` long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Affine", "Clustered", "asymmetric", "kmeans", "symmetric"]

_CLIP_GRID = np.linspace(0.5, 1.0, 26)  # fractions of the full range tried by `asymmetric`
_CHUNK = 2**22  # values handled at a time (k-means assignment, asymmetric searches)


@dataclass(frozen=True)
class Affine:
    """Integer values with a scale and zero point (scalars, or one per channel).

    Attributes:
        q: The integers (int8 for symmetric, uint8 for asymmetric, at most 8 bits).
        scale: ``S``, broadcastable against ``q`` along ``axis``.
        zero_point: ``z`` (zeros for symmetric), same shape as ``scale``.
        axis: The channel axis (or the blocked axis), or ``None`` for per-tensor.
        block_size: Values per scale along ``axis``; ``None`` for one scale per channel.
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    block_size: int | None = None

    def dequantize(self) -> np.ndarray:
        """``(q − z)·S`` as float32."""
        scale, zero = self._broadcast(self.scale), self._broadcast(self.zero_point)
        restored: np.ndarray = (self.q.astype(np.float32) - zero.astype(np.float32)) * scale
        return restored.astype(np.float32)

    def _broadcast(self, values: np.ndarray) -> np.ndarray:
        if self.axis is None:
            return values
        if self.block_size is not None:  # repeat each block's scale, trim the last block
            length = self.q.shape[self.axis]
            spread = np.repeat(values, self.block_size, axis=self.axis)
            return np.take(spread, np.arange(length), axis=self.axis)
        shape = [1] * self.q.ndim
        shape[self.axis] = -1
        return values.reshape(shape)


@dataclass(frozen=True)
class Clustered:
    """K-means quantized values: ``x̂ = codebook[indices]``."""

    indices: np.ndarray
    codebook: np.ndarray

    def dequantize(self) -> np.ndarray:
        """The reconstructed tensor."""
        restored: np.ndarray = self.codebook[self.indices.astype(np.int64)].astype(np.float32)
        return restored


def _channels(x: np.ndarray, axis: int | None) -> np.ndarray:
    """``x`` as rows of one channel each (one row when per-tensor)."""
    if axis is None:
        return x.reshape(1, -1)
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def symmetric(
    x: np.ndarray,
    *,
    bits: int = 8,
    axis: int | None = None,
    block_size: int | None = None,
    qmax: int | None = None,
) -> Affine:
    """Symmetric quantization: ``S = max|x| / qmax``, ``q = round(x/S)`` in
    ``[−qmax, qmax]``; one ``S`` per tensor, per channel along ``axis``, or per block of
    ``block_size`` values along ``axis``. ``qmax`` is ``2^(n−1) − 1`` unless given (64
    for onnxruntime's reduced int8 range)."""
    _check_bits(bits)
    if block_size is not None:
        return _blocked(symmetric, x, bits, _block_axis(axis, block_size), block_size)
    qmax = 2 ** (bits - 1) - 1 if qmax is None else qmax
    peak = np.abs(_channels(x, axis)).max(axis=1)
    scale = np.where(peak > 0, peak / qmax, 1.0).astype(np.float32)
    shaped = (
        scale if axis is None else scale.reshape([-1 if i == axis else 1 for i in range(x.ndim)])
    )
    q = np.clip(np.round(x / (shaped if axis is not None else scale[0])), -qmax, qmax).astype(
        np.int8
    )
    out_scale = scale if axis is not None else scale.reshape(())
    return Affine(q, out_scale, np.zeros_like(out_scale, dtype=np.int8), axis)


def asymmetric(
    x: np.ndarray, *, bits: int = 8, axis: int | None = None, block_size: int | None = None
) -> Affine:
    """Asymmetric quantization with scale and zero point minimising ‖x − x̂‖² per tensor,
    per channel along ``axis``, or per block of ``block_size`` values along ``axis``."""
    _check_bits(bits)
    if block_size is not None:
        return _blocked(asymmetric, x, bits, _block_axis(axis, block_size), block_size)
    levels = 2**bits - 1
    channels = _channels(x, axis)
    step = max(1, _CHUNK // max(channels.shape[1], 1))
    parts = [_best_affine(channels[i : i + step].astype(np.float64), levels)
             for i in range(0, channels.shape[0], step)]  # fmt: skip
    scales, zeros, q_rows = (np.concatenate(p) for p in zip(*parts, strict=True))
    if axis is None:
        q = q_rows.reshape(x.shape)
    else:
        moved = [x.shape[axis], *(d for i, d in enumerate(x.shape) if i != axis)]
        q = np.moveaxis(q_rows.reshape(moved), 0, axis)
    scale_arr = np.asarray(scales, dtype=np.float32)
    zero_arr = np.asarray(zeros, dtype=np.uint8)
    if axis is None:
        scale_arr, zero_arr = scale_arr.reshape(()), zero_arr.reshape(())
    return Affine(q.astype(np.uint8), scale_arr, zero_arr, axis)


def _blocked(
    quantize: Callable[..., Affine], x: np.ndarray, bits: int, axis: int, block: int
) -> Affine:
    """``quantize`` applied per block: the blocks of ``axis`` become rows of a matrix
    (the last one padded with zeros, which every scheme keeps exact), quantized per row."""
    moved = np.moveaxis(x, axis, -1)
    length = moved.shape[-1]
    count = -(-length // block)
    padded = np.zeros((*moved.shape[:-1], count * block), x.dtype)
    padded[..., :length] = moved
    rows = quantize(padded.reshape(-1, block), bits=bits, axis=0)
    q = np.moveaxis(rows.q.reshape(padded.shape)[..., :length], -1, axis)
    grid = (*moved.shape[:-1], count)
    scale = np.moveaxis(rows.scale.reshape(grid), -1, axis)
    zero = np.moveaxis(rows.zero_point.reshape(grid), -1, axis)
    return Affine(np.ascontiguousarray(q), np.ascontiguousarray(scale),
                  np.ascontiguousarray(zero), axis, block)  # fmt: skip


def _block_axis(axis: int | None, block_size: int) -> int:
    if axis is None or block_size < 1:
        raise ValueError(f"block-wise quantization needs an axis and a block size ≥ 1, "
                         f"got axis={axis}, block_size={block_size}")  # fmt: skip
    return axis


def _best_affine(rows: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the scale, zero point and codes of least squared error, over the clips of
    ``_CLIP_GRID``: all rows at once (one Python step per clip, not per row and clip,
    which took 13 s for a million values in blocks of 32)."""
    lo, hi = np.minimum(rows.min(axis=1), 0.0), np.maximum(rows.max(axis=1), 0.0)  # 0 exact
    best_error = np.full(rows.shape[0], np.inf)
    best_scale, best_zero = np.ones(rows.shape[0]), np.zeros(rows.shape[0])
    best_q = np.zeros_like(rows)
    for fraction in _CLIP_GRID:
        a, b = lo * fraction, hi * fraction
        scale = np.where(b > a, (b - a) / levels, 1.0)
        zero = np.clip(np.round(-a / scale), 0, levels)
        q = np.clip(np.round(rows / scale[:, None] + zero[:, None]), 0, levels)
        error = np.square((q - zero[:, None]) * scale[:, None] - rows).sum(axis=1)
        better = error < best_error
        best_error[better], best_scale[better], best_zero[better] = (
            error[better], scale[better], zero[better])  # fmt: skip
        best_q[better] = q[better]
    return best_scale, best_zero, best_q.astype(np.uint8)  # codes: 1 byte, not 8


def kmeans(x: np.ndarray, *, k: int, iterations: int = 100) -> Clustered:
    """Cluster the values of ``x`` into ``k`` ≤ 256 centroids (deterministic).

    1-D k-means (Lloyd's, from quantile centroids) on the sorted values: each cluster is
    a contiguous run of them, so an iteration finds its cuts by binary search and its
    means from prefix sums — O(k log n) instead of a pass over every value. One sort and
    one final assignment cost O(n log n) in all, whatever the number of iterations.
    Memory: the sorted values in float32 and their float64 prefix sums (an embedding
    table of 65M values needs 0.8 GB, not the 2.5 GB float64 copies of it took).
    """
    if not 2 <= k <= 256:
        raise ValueError(f"k must be between 2 and 256 (indices are uint8), got {k}")
    values = x.reshape(-1)
    ordered = np.sort(values.astype(np.float32, copy=False))
    changes = np.flatnonzero(ordered[1:] != ordered[:-1])
    if changes.size < k:  # at most k distinct values: exact
        distinct = ordered[np.concatenate(([0], changes + 1))].astype(np.float64)
        return Clustered(_assign(values, distinct, exact=True).reshape(x.shape),
                         distinct.astype(np.float32))  # fmt: skip
    del changes
    prefix = np.concatenate(([0.0], np.cumsum(ordered, dtype=np.float64)))
    at = ((np.arange(k) + 0.5) / k * (ordered.size - 1)).astype(np.int64)
    centroids = ordered[at].astype(np.float64)
    for _ in range(iterations):
        edges = _float32_ceiling(_edges(centroids))  # float64 edges would copy `ordered`
        cuts = np.concatenate(([0], np.searchsorted(ordered, edges), [ordered.size]))
        counts = np.diff(cuts)
        sums = prefix[cuts[1:]] - prefix[cuts[:-1]]
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(updated, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.sort(updated)
    del ordered, prefix
    return Clustered(_assign(values, centroids).reshape(x.shape), centroids.astype(np.float32))


def _float32_ceiling(values: np.ndarray) -> np.ndarray:
    """The smallest float32 ≥ each value: among float32 numbers, ``x ≥ v`` exactly when
    ``x ≥ ceiling(v)``, so binary searches over float32 data find the same cuts as with
    the float64 values, without numpy casting the whole data to float64 each time."""
    rounded = values.astype(np.float32)
    low = rounded < values
    rounded[low] = np.nextafter(rounded[low], np.float32(np.inf))
    return rounded


def _assign(values: np.ndarray, centroids: np.ndarray, *, exact: bool = False) -> np.ndarray:
    """uint8 index of each value's nearest (sorted) centroid, or, ``exact``, of the
    centroid equal to it; a chunk at a time, so no int64 copy of the whole tensor."""
    out = np.empty(values.size, np.uint8)
    bounds = centroids if exact else _edges(centroids)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK].astype(np.float64)
        out[start : start + _CHUNK] = np.searchsorted(bounds, chunk)
    return out


def _edges(centroids: np.ndarray) -> np.ndarray:
    """Midpoints between neighbouring (sorted) centroids: where one cluster ends."""
    edges: np.ndarray = (centroids[1:] + centroids[:-1]) / 2
    return edges


def _check_bits(bits: int) -> None:
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be between 2 and 8, got {bits}")
