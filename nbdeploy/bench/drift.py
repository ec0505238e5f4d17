"""Where each variant's answers drift from the first one's: the activation report of
every variant whose outputs differ, its worst node named in the row's note, so a
comparison says where an accuracy drop comes from as well as how large it is."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ..artifact import Artifact
from ..errors import NbDeployError
from ..graph.activation_report import INLINE_BYTES, ActivationReport
from .rows import ComparisonRow

__all__ = ["annotate", "drifts"]
log = logging.getLogger(__name__)

_ROWS = 8  # rows of the data the models run on
_SAME = 1e-5  # outputs this close to the first variant's have nothing to explain


def drifts(
    rows: Sequence[ComparisonRow], variants: Mapping[str, Artifact], x: dict[str, np.ndarray]
) -> dict[str, ActivationReport]:
    """Per variant label, how it drifts from the first artifact, tensor by tensor: for
    variants whose outputs differ from the first's, small enough to run whole
    (:data:`INLINE_BYTES`) and taking the same inputs. A variant that cannot be compared
    so (another graph's tensors cannot be matched) is left out, with a debug log line."""
    from ..graph.activations import activations

    labels = list(variants)
    if not labels:
        return {}
    first = variants[labels[0]]
    differ = {r.variant for r in rows if r.max_abs_diff is not None and r.max_abs_diff > _SAME}
    out = {}
    for label in labels[1:]:
        art = variants[label]
        if label not in differ or max(art.size_bytes, first.size_bytes) > INLINE_BYTES:
            continue
        try:
            out[label] = activations(first, art, x, rows=_ROWS)
        except NbDeployError as err:
            log.debug("no activation report for %s: %s", label, err)
    return out


def annotate(
    rows: Sequence[ComparisonRow], reports: Mapping[str, ActivationReport]
) -> list[ComparisonRow]:
    """``rows`` with the worst node of their variant's report in the note."""
    out = []
    for row in rows:
        report = reports.get(row.variant)
        worst = report.worst(1) if report is not None else []
        if not worst:
            out.append(row)
            continue
        t = worst[0]
        said = (f"drifts most at {t.nodes} ({t.op}, SQNR {t.sqnr_db:.1f} dB there): "
                f"comparison.activations({row.variant!r}) for every tensor.")  # fmt: skip
        out.append(replace(row, note=f"{row.note} {said}".strip()))
    return out
