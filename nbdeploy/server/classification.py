"""Triton's classification extension: instead of an output's scores, its top ``k``
classes as strings ``"value:index"`` (``"value:index:label"`` when the config names a
``label_filename``), highest first, as a BYTES tensor of shape ``[batch, k]`` (``[k]``
for a model without a batch dimension)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ProtocolError

__all__ = ["classify", "read_labels"]


def classify(
    scores: np.ndarray, count: int, labels: Sequence[str] | None, *, batched: bool
) -> np.ndarray:
    """The top ``count`` classes of each row of ``scores`` (at most as many as there are)."""
    if scores.dtype.kind not in "biuf":
        raise ProtocolError(
            f"classification needs numeric scores; this output is {scores.dtype.name}"
        )
    rows = scores.reshape(scores.shape[0] if batched else 1, -1)
    top = np.argsort(-rows, axis=1, kind="stable")[:, : min(count, rows.shape[1])]
    names = list(labels or ())
    text = [
        [f"{rows[r, i]:f}:{i}" + (f":{names[i]}" if i < len(names) else "") for i in row]
        for r, row in enumerate(top)
    ]
    classes = np.array([[t.encode() for t in row] for row in text], dtype=object)
    return classes if batched else classes.reshape(-1)


def read_labels(folder: Path, filename: str) -> list[str]:
    """One label per line of ``folder/filename`` (a plain file inside the model's folder)."""
    path = folder / filename
    if "/" in filename or "\\" in filename or filename.startswith(".") or path.is_symlink():
        raise ProtocolError(f"label_filename {filename!r} must name a file beside config.pbtxt")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ProtocolError(f"cannot read the labels {filename!r}: {err}") from err
