"""Data for a metric and a model's predictions on it: shared by ``nbd.compare`` and
``nbd.quantize(..., max_drop=)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._feed import as_feed, batch_size, random_feed
from . import metrics

if TYPE_CHECKING:
    from ..artifact import Artifact
    from ..types import TensorSpec

EVAL_BATCH = 256  # rows per session run when scoring


def split_data(data: Any, first: Artifact) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``(X, y)``, ``X`` or ``None`` as a feed for ``first``'s inputs and the labels (or
    ``None``). A pair of arrays is ``(X, y)`` unless the model takes exactly two inputs
    and both look like batches of them; ``None`` is the artifact's example (random inputs
    of the right shape when it has none)."""
    if data is None:
        feed = first.example if first.example is not None else random_feed(first.inputs)
        return feed, None
    if (
        isinstance(data, tuple)
        and len(data) == 2
        and not (len(first.inputs) == 2 and _arrays(data))
    ):
        return as_feed(data[0], first.inputs), np.asarray(data[1])
    return as_feed(data, first.inputs), None


def predict_all(inputs: list[TensorSpec], x: dict[str, np.ndarray], session: Any) -> np.ndarray:
    """The output a metric scores (:func:`metrics.prediction`) for every row of ``x``, run
    in batches of :data:`EVAL_BATCH` on ``session`` (anything with onnxruntime's ``run``
    and ``get_outputs``)."""
    names = [o.name for o in session.get_outputs()]
    parts = []
    for start in range(0, batch_size(x), EVAL_BATCH):
        rows = {k: v[start : start + EVAL_BATCH] for k, v in x.items()}
        values = session.run(None, as_feed(rows, inputs))
        parts.append(metrics.prediction(dict(zip(names, values, strict=True))))
    return np.concatenate(parts)


def _arrays(pair: tuple[Any, Any]) -> bool:
    return all(isinstance(v, np.ndarray) and v.ndim >= 2 for v in pair)
