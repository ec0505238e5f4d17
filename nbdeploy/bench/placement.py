"""Where onnxruntime put a model's nodes: how many the provider asked for took, how many
fell back to the CPU, and into how many compiled subgraphs a compiling provider fused its
share.

Read from the session that is timed, through onnxruntime's record of its partitioning
(``session.record_ep_graph_assignment_info``, onnxruntime 1.24 and later): for each
provider, the subgraphs it was assigned and the nodes in each. It counts the nodes of the
graph after onnxruntime's basic optimizations (constant folding, ...) and before the
fusions each provider then makes of its own share, so the same model has the same total
on every provider. The profiler cannot say as much: a compiling provider (OpenVINO,
TensorRT) runs its whole share as one fused node (``OpenVINO-EP-subgraph_1``), one
profile event for any number of model nodes.

The record misses nodes that no provider could take when onnxruntime partitioned the
graph and that it then ran on the CPU after casting them to float32: the fp16 operators
that the CPU provider of onnxruntime 1.24 has no kernels for (an fp16 CNN records 3 of its
12 nodes there; the OpenVINO provider of the same session claims all 12). A comparison
therefore completes each row's count to the largest total that any provider recorded for
the same variant (:func:`complete_rows`), counting the missing nodes on the CPU and saying
so (``"CPU 12/12 (9 placed after partitioning)"``); with one provider alone they stay
uncounted.

Older onnxruntime builds lack that record; there :func:`from_profile` counts node runs in
one profiled run instead, and says so (``counted == "profile"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .providers import PROVIDERS
from .rows import ComparisonRow

__all__ = [
    "RECORD_KEY",
    "Placement",
    "complete_rows",
    "fallback_note",
    "from_profile",
    "from_session",
    "placed",
]

RECORD_KEY = "session.record_ep_graph_assignment_info"
"""The session config entry that makes onnxruntime keep its partitioning."""

_SHORT = {full: short for short, full in PROVIDERS.items()}
_LABELS = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT", "openvino": "OpenVINO",
           "dml": "DirectML"}  # fmt: skip


@dataclass(frozen=True)
class Placement:
    """How a session split a model's nodes between the provider asked for and the CPU.

    Attributes:
        provider: The provider asked for (short name: ``"openvino"``).
        nodes: Nodes per provider, by short name (``{"openvino": 9, "cpu": 3}``).
        subgraphs: Compiled subgraphs per provider that fused several nodes into one
            (``{"openvino": 1}``); providers that run node by node (the CPU) are absent.
        counted: ``"assignment"``: onnxruntime's record of its partitioning, nodes of the
            graph after basic optimizations. ``"profile"``: node runs in one profiled run
            (older onnxruntime), where a compiled subgraph counts as one node.
        late: Nodes missing from the record that onnxruntime ran on the CPU after
            partitioning, counted in ``nodes["cpu"]`` (:meth:`completed`).
    """

    provider: str
    nodes: Mapping[str, int]
    subgraphs: Mapping[str, int] = field(default_factory=dict)
    counted: Literal["assignment", "profile"] = "assignment"
    late: int = 0

    @property
    def on_provider(self) -> int:
        """Nodes the provider asked for took."""
        return self.nodes.get(self.provider, 0)

    @property
    def total(self) -> int:
        """Nodes on every provider together."""
        return sum(self.nodes.values())

    @property
    def fell_back(self) -> int:
        """Nodes that another provider (the CPU) ran instead of the one asked for."""
        return self.total - self.on_provider

    def __str__(self) -> str:
        """``"OpenVINO 12/12 in 1 subgraph"``, ``"CPU 6/6"``,
        ``"OpenVINO 9/12 in 2 subgraphs · CPU 3"``."""
        parts = [f"{_label(self.provider)} {self.on_provider}/{self.total}"]
        if fused := self.subgraphs.get(self.provider):
            parts[0] += f" in {fused} subgraph{'s' * (fused != 1)}"
        parts += [f"{_label(p)} {n}" for p, n in self.nodes.items() if p != self.provider and n]
        text = " · ".join(parts)
        if self.late:
            text += f" ({self.late} placed after partitioning)"
        return text + (" (profiled)" if self.counted == "profile" else "")

    def completed(self, total: int) -> Placement:
        """This placement with the nodes missing from the record up to ``total`` (another
        provider's record of the same model) counted on the CPU, which ran them."""
        missing = total - self.total
        if missing <= 0 or self.counted != "assignment":
            return self
        nodes = {**self.nodes, "cpu": self.nodes.get("cpu", 0) + missing}
        return replace(self, nodes=nodes, late=self.late + missing)


def from_session(session: Any, provider: str) -> Placement | None:
    """The placement onnxruntime recorded for ``session`` (made with :data:`RECORD_KEY`
    set), or ``None`` where this onnxruntime keeps no record."""
    read = getattr(session, "get_provider_graph_assignment_info", None)
    if read is None:
        return None
    try:
        assigned = read()
    except Exception:  # onnxruntime's Fail: the entry was not set on this session
        return None
    sizes: dict[str, list[int]] = {}
    for subgraph in assigned:
        sizes.setdefault(_short(subgraph.ep_name), []).append(len(subgraph.get_nodes()))
    nodes = {short: sum(counts) for short, counts in sizes.items()}
    # A provider that runs node by node lists each node as a subgraph of its own.
    fused = {short: len(counts) for short, counts in sizes.items() if max(counts) > 1}
    return Placement(provider, nodes, fused)


def from_profile(provider: str, events: list[dict[str, Any]]) -> Placement:
    """The placement read from one profiled run's kernel events (older onnxruntime)."""
    nodes = Counter(_short(event["args"]["provider"]) for event in events)
    return Placement(provider, dict(nodes), counted="profile")


def _short(full: str) -> str:
    return _SHORT.get(full, full.removesuffix("ExecutionProvider").lower())


def _label(short: str) -> str:
    return _LABELS.get(short, short)


def placed(row: ComparisonRow, where: Placement | None) -> ComparisonRow:
    """``row`` with its placement fields: the text and the two counts."""
    if where is None:
        return row
    return replace(row, placement=str(where), nodes_on_provider=where.on_provider,
                   nodes_total=where.total)  # fmt: skip


def fallback_note(provider: str, where: Placement | None) -> str:
    """The note's warning when nodes fell back from a provider other than the CPU."""
    if where is None or provider == "cpu" or not where.fell_back:
        return ""
    return f"{where.fell_back} of {where.total} nodes fell back to the CPU (a slowdown source). "


def complete_rows(
    rows: Sequence[ComparisonRow], recorded: Mapping[tuple[str, str], Placement]
) -> list[ComparisonRow]:
    """``rows`` whose recorded placement (by variant and provider) has fewer nodes than
    another provider recorded for the same variant, completed (:meth:`Placement.completed`)
    with their fallback note said again."""
    most: dict[str, int] = {}
    for (variant, _), each in recorded.items():
        most[variant] = max(most.get(variant, 0), each.total)
    done = []
    for row in rows:
        where = recorded.get((row.variant, row.provider))
        if where is None or where.total >= most[row.variant]:
            done.append(row)
            continue
        whole = where.completed(most[row.variant])
        rest = row.note.removeprefix(fallback_note(row.provider, where))
        done.append(placed(replace(row, note=fallback_note(row.provider, whole) + rest), whole))
    return done
