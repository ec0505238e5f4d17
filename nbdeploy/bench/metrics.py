"""Accuracy metrics over model outputs, by name or as any ``(y_true, y_pred) -> float``.

Classification metrics (``accuracy``, ``top5``) are in percent, so a "drop of 1" is one
point; error metrics (``mse``, ``mae``) are in the data's units, lower is better.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Metric:
    """A named metric and its direction."""

    name: str
    fn: MetricFn
    higher_is_better: bool


def _accuracy(y: np.ndarray, scores: np.ndarray) -> float:
    predicted = scores.argmax(-1) if scores.ndim > 1 and scores.dtype.kind == "f" else scores
    return float(np.mean(predicted.reshape(y.shape) == y) * 100)


def _top5(y: np.ndarray, scores: np.ndarray) -> float:
    if scores.ndim < 2:
        raise ConfigError("top5 needs per-class scores (an output of shape [batch, classes]).")
    top = np.argsort(-scores, axis=-1)[..., :5]
    return float(np.mean(np.any(top == y.reshape(-1, 1), axis=-1)) * 100)


def _mse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.square(pred.reshape(y.shape).astype(np.float64) - y)))


def _mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.reshape(y.shape).astype(np.float64) - y)))


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", _accuracy, True),
    "top5": Metric("top5", _top5, True),
    "mse": Metric("mse", _mse, False),
    "mae": Metric("mae", _mae, False),
}


def resolve(metric: str | MetricFn) -> Metric:
    """A :class:`Metric` for a name or a callable (assumed higher-is-better)."""
    if callable(metric):
        return Metric(getattr(metric, "__name__", "metric"), metric, True)
    if metric not in METRICS:
        raise ConfigError(
            f"unknown metric {metric!r}; choose {', '.join(METRICS)} or pass a function."
        )
    return METRICS[metric]


def prediction(outputs: Mapping[str, Any]) -> np.ndarray:
    """The output a metric scores: the first float tensor of rank ≥ 2 (class scores), else
    the first tensor (labels, regression values). Sequence and map outputs (onnxruntime
    returns them as lists and dicts) are never scored.

    Raises:
        ConfigError: The model has no tensor output to score.
    """
    tensors = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray)}
    if not tensors:
        raise ConfigError(
            f"no tensor output to score: {', '.join(outputs)} are sequences or maps. "
            f"End the graph with a tensor (ConcatFromSequence, SequenceAt) to compare it."
        )
    for value in tensors.values():
        if value.dtype.kind == "f" and value.ndim >= 2:
            return value
    return next(iter(tensors.values()))
