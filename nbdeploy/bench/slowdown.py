"""Why a variant is slower than the first one: where its kernel time goes, by operator,
next to where the first variant's goes, so a comparison explains its own surprise
("int8 is smaller, why is it slower?") in the row's note."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._feed import as_feed
from ..artifact import Artifact
from .providers import kernel_events
from .rows import ComparisonRow

__all__ = ["OpTime", "explain", "op_times", "why_slower"]

PROFILED_RUNS = 3
_SUBGRAPH_NUMBER = re.compile(r"(?<=-subgraph)_\d+$")


@dataclass(frozen=True)
class OpTime:
    """Kernel time of one operator type in one run.

    Attributes:
        op: The ONNX operator type as onnxruntime ran it (``ConvInteger``, ``MatMulNBits``).
        nodes: How many nodes of that type ran.
        micros: Their kernel time together, in microseconds per run.
    """

    op: str
    nodes: int
    micros: float


def op_times(art: Artifact, provider: str, feed: dict[str, np.ndarray]) -> dict[str, OpTime]:
    """Kernel time per operator type of ``art`` on ``provider``, averaged over a few
    profiled runs (onnxruntime's profiler: the first run is warm-up, not counted)."""
    events = kernel_events(art, provider, feed, runs=PROFILED_RUNS + 1)
    per_run = len(events) // (PROFILED_RUNS + 1)
    micros: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    for event in events[per_run:]:
        micros[_op(event)] += float(event.get("dur", 0)) / PROFILED_RUNS
    for event in events[:per_run]:
        nodes[_op(event)] += 1
    return {op: OpTime(op, nodes[op], micros[op]) for op in micros}


def _op(event: dict[str, Any]) -> str:
    """The event's operator; a compiling provider's fused subgraph without its number
    (``OpenVINO-EP-subgraph_3`` → ``OpenVINO-EP-subgraph``), which differs per session, so
    that two variants' subgraphs compare as the same kind."""
    return _SUBGRAPH_NUMBER.sub("", event["args"]["op_name"])


def why_slower(
    variant: Mapping[str, OpTime], reference: Mapping[str, OpTime], reference_label: str
) -> str:
    """One line: the variant's kernel time against the reference's, and the (up to two)
    operators whose time grew most — or, when the kernels take no longer, that the
    difference lies outside them."""
    total = sum(t.micros for t in variant.values())
    reference_total = sum(t.micros for t in reference.values())
    if total - reference_total < 1.0:
        return (
            f"slower than {reference_label}, but not in its kernels ({total:.0f} µs a run "
            f"against {reference_total:.0f} µs): the difference is copies and session overhead"
        )

    def growth(t: OpTime) -> float:
        return t.micros - (reference[t.op].micros if t.op in reference else 0.0)

    grown = [t for t in sorted(variant.values(), key=growth, reverse=True)[:2] if growth(t) > 0]
    parts = [f"{t.op} ×{t.nodes} +{growth(t):.0f} µs{'' if t.op in reference else ' (new)'}"
             for t in grown]  # fmt: skip
    return (
        f"slower than {reference_label}: profiled, its kernels take {total:.0f} µs a run against "
        f"{reference_total:.0f} µs, most of it {', '.join(parts)}"
    )


def explain(
    rows: Sequence[ComparisonRow],
    variants: Mapping[str, Artifact],
    feed_at: Any,
) -> list[ComparisonRow]:
    """``rows`` with a reason in the note of each row clearly slower (intervals apart)
    than the first artifact's row on the same provider and batch size.

    Args:
        rows: A comparison's rows.
        variants: The artifacts by label (source-model rows are left alone).
        feed_at: ``(artifact, batch size) -> feed`` for the profiled runs.
    """
    firsts: dict[tuple[str, int], ComparisonRow] = {}
    for row in rows:
        if row.variant in variants and row.p50_ms is not None:
            firsts.setdefault((row.provider, row.batch_size), row)
    cache: dict[tuple[str, str, int], dict[str, OpTime]] = {}

    def times(row: ComparisonRow) -> dict[str, OpTime]:
        key = (row.variant, row.provider, row.batch_size)
        if key not in cache:
            art = variants[row.variant]
            feed = as_feed(feed_at(art, row.batch_size), art.inputs)
            cache[key] = op_times(art, row.provider, feed)
        return cache[key]

    explained = []
    for row in rows:
        first = firsts.get((row.provider, row.batch_size))
        if first is None or row is first or row.variant not in variants or not _slower(row, first):
            explained.append(row)
            continue
        reason = why_slower(times(row), times(first), first.variant)
        explained.append(replace(row, note=f"{reason}. {row.note}".strip()))
    return explained


def _slower(row: ComparisonRow, first: ComparisonRow) -> bool:
    mine, theirs = row.p50_interval_ms, first.p50_interval_ms
    return mine is not None and theirs is not None and mine[0] > theirs[1]
