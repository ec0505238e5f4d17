"""The formulas against hand computations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from nbdeploy.quantization import maths


def test_symmetric_by_hand() -> None:
    x = np.array([-1.27, 0.0, 0.5, 1.0], np.float32)
    result = maths.symmetric(x, bits=8)
    # S = max|x| / 127 = 0.01 ; q = round(x / S)
    assert result.scale == pytest.approx(0.01)
    np.testing.assert_array_equal(result.q, [-127, 0, 50, 100])
    np.testing.assert_allclose(result.dequantize(), x, atol=1e-6)


def test_symmetric_per_channel_and_fewer_bits() -> None:
    w = np.array([[0.9, -2.0], [0.3, 0.1]], np.float32)
    result = maths.symmetric(w, bits=4, axis=0)  # qmax = 7
    np.testing.assert_allclose(result.scale, [2 / 7, 0.3 / 7], rtol=1e-6)
    np.testing.assert_array_equal(
        result.q, [[3, -7], [7, 2]]
    )  # 0.9/(2/7) = 3.15, 0.1/(0.3/7) = 2.3
    assert np.abs(result.dequantize() - w).max() <= result.scale.max() / 2 + 1e-7


def test_asymmetric_by_hand_and_zero_is_exact() -> None:
    x = np.array([0.0, 1.0, 2.55], np.float32)
    result = maths.asymmetric(x, bits=8)
    # full range [0, 2.55]: S = 2.55/255 = 0.01, z = 0 and this is already the best clip
    assert result.scale == pytest.approx(0.01) and result.zero_point == 0
    np.testing.assert_array_equal(result.q, [0, 100, 255])
    skewed = np.array([-0.1, 0.0, 3.0], np.float32)
    back = maths.asymmetric(skewed).dequantize()
    assert back[1] == 0.0  # zero is representable exactly, as ONNX requires


def test_asymmetric_minimises_error_against_the_plain_min_max() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, 1000), [4.0]]).astype(np.float32)  # one outlier
    result = maths.asymmetric(x, bits=4)
    levels = 15
    scale = (4.0 - x.min()) / levels
    zero = np.round(-x.min() / scale)
    plain = (np.clip(np.round(x / scale + zero), 0, levels) - zero) * scale
    assert np.square(result.dequantize() - x).sum() <= np.square(plain - x).sum()


def test_kmeans_is_deterministic_and_exact_on_few_values() -> None:
    x = np.array([0.1, 0.1, 0.5, 0.9, 0.9, 0.5], np.float32)
    result = maths.kmeans(x, k=4)
    np.testing.assert_array_equal(result.dequantize(), x)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    a, b = maths.kmeans(w, k=16), maths.kmeans(w, k=16)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.indices.dtype == np.uint8 and a.codebook.shape == (16,)
    error = np.abs(a.dequantize() - w)
    assert error.mean() < 0.1 * np.abs(w).mean() and np.all(np.diff(a.codebook) > 0)


@pytest.mark.parametrize("k", [3, 16])
def test_kmeans_finds_what_plain_lloyd_iterations_find(k: int) -> None:
    """The sorted-values shortcuts (cuts by binary search, means from prefix sums, float32
    searches) change nothing: the same centroids and assignments as assigning every
    value to its nearest centroid and averaging, from the same quantile start."""
    rng = np.random.default_rng(1)
    w = rng.laplace(size=(40, 50)).astype(np.float32)
    values = np.sort(w.reshape(-1).astype(np.float64))
    centroids = values[((np.arange(k) + 0.5) / k * (values.size - 1)).astype(np.int64)]
    for _ in range(100):
        nearest = np.abs(values[:, None] - centroids[None, :]).argmin(axis=1)
        sums = np.bincount(nearest, weights=values, minlength=k)
        counts = np.bincount(nearest, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(updated, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.sort(updated)
    result = maths.kmeans(w, k=k)
    np.testing.assert_allclose(result.codebook, centroids.astype(np.float32), rtol=1e-6)
    plain = np.abs(w.reshape(-1, 1) - centroids[None, :]).argmin(axis=1).reshape(w.shape)
    np.testing.assert_array_equal(result.indices, plain)


def test_bad_parameters_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="between 2 and 256"):
        maths.kmeans(np.zeros(4), k=300)
    with pytest.raises(ValueError, match="bits must be between 2 and 8"):
        maths.symmetric(np.zeros(4), bits=16)


@pytest.mark.parametrize("quantize", [maths.symmetric, maths.asymmetric])
def test_blocks_are_channels_of_their_own_and_the_last_may_be_short(
    quantize: Callable[..., maths.Affine],
) -> None:
    w = np.random.default_rng(4).standard_normal((5, 70)).astype(np.float32)
    blocked = quantize(w, bits=4, axis=1, block_size=32)
    assert blocked.scale.shape == (5, 3) and blocked.q.shape == w.shape
    for start in (0, 32, 64):  # 32 + 32 + 6 values
        alone = quantize(w[:, start : start + 32], bits=4, axis=0)
        np.testing.assert_array_equal(blocked.q[:, start : start + 32], alone.q)
        np.testing.assert_array_equal(blocked.scale[:, start // 32], alone.scale)
