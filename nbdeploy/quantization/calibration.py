"""Calibration data in every form users have it, as a list of feeds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._feed import as_feed
from ..errors import ExampleError
from ..types import TensorSpec

MAX_BATCH = 64  # split big arrays so calibration memory stays bounded


def batches(calibration: Any, specs: Sequence[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """Calibration data as feeds: an array, a tuple/dict of arrays, or an iterable of those.

    Raises:
        ExampleError: Missing data, or data that do not fit the model's inputs (the
            message names the input and the expected shape).
    """
    if calibration is None:
        raise ExampleError(
            "int8-static needs calibration data: pass calibration= a few hundred "
            "representative inputs (an array, a tuple/dict of arrays, or batches of them)."
        )
    if _is_one_batch(calibration, len(specs)):
        return _split(as_feed(calibration, specs))
    feeds = [feed for item in calibration for feed in _split(as_feed(item, specs))]
    if not feeds:
        raise ExampleError("calibration data is empty: give at least one batch.")
    return feeds


def _is_one_batch(data: Any, inputs: int) -> bool:
    if isinstance(data, np.ndarray | Mapping) or hasattr(data, "detach"):
        return True
    if isinstance(data, tuple) and inputs > 1 and len(data) == inputs:
        return all(isinstance(x, np.ndarray) or hasattr(x, "detach") for x in data)
    return not isinstance(data, Iterable)


def _split(feed: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    size = next((len(v) for v in feed.values() if v.ndim), 1)
    return [{k: v[i : i + MAX_BATCH] if v.ndim else v for k, v in feed.items()}
            for i in range(0, size, MAX_BATCH)]  # fmt: skip
