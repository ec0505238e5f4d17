"""``nbd.diff``: what changed between two artifacts, structurally and numerically."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .. import _html
from .._feed import as_feed, batch_size, random_feed
from ..artifact import Artifact
from ..provenance import OutputParity, compare_outputs
from .inspect import inspect
from .report import OptimizationReport

__all__ = ["GraphDiff", "diff"]


@dataclass(frozen=True)
class GraphDiff:
    """Differences between artifact ``a`` (before) and ``b`` (after).

    Attributes:
        a: The first artifact's variant label (``Artifact.variant``: name and last step).
        b: The second's.
        nodes_before: Node count of ``a``.
        nodes_after: Node count of ``b``.
        op_deltas: Per operator, count in ``b`` minus count in ``a`` (changed ones only).
        removed: Names of nodes in ``a`` but not in ``b``.
        added: Names of nodes in ``b`` but not in ``a``.
        fused: Rule firings that produced ``b`` from ``a``, when ``b`` was optimized.
        weight_bytes: Bytes of weights before and after.
        size_bytes: File size before and after.
        outputs: Per output, the numerical difference of ``b`` against ``a``.
    """

    a: str
    b: str
    nodes_before: int
    nodes_after: int
    op_deltas: dict[str, int]
    removed: tuple[str, ...]
    added: tuple[str, ...]
    fused: dict[str, int]
    weight_bytes: tuple[int, int]
    size_bytes: tuple[int, int]
    outputs: tuple[OutputParity, ...]

    @property
    def max_abs(self) -> float:
        """Largest absolute output difference."""
        return max((o.max_abs for o in self.outputs), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "a": self.a, "b": self.b, "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after, "op_deltas": self.op_deltas,
            "removed": list(self.removed), "added": list(self.added), "fused": self.fused,
            "weight_bytes": list(self.weight_bytes), "size_bytes": list(self.size_bytes),
            "outputs": [o.__dict__ for o in self.outputs],
        }  # fmt: skip

    def __str__(self) -> str:
        deltas = ", ".join(f"{op} {n:+d}" for op, n in self.op_deltas.items()) or "none"
        numbers = ", ".join(f"{o.output}: max abs {o.max_abs:.3g}" for o in self.outputs)
        return "\n".join([
            f"{self.a} → {self.b}: {self.nodes_before} → {self.nodes_after} nodes "
            f"({len(self.removed)} removed, {len(self.added)} added)",
            f"  ops: {deltas}",
            f"  fused: {', '.join(f'{k} ×{v}' for k, v in self.fused.items()) or 'n/a'}",
            f"  weights: {_html.human_bytes(self.weight_bytes[0])} → "
            f"{_html.human_bytes(self.weight_bytes[1])}",
            f"  outputs: {numbers}",
        ])  # fmt: skip

    def _repr_html_(self) -> str:
        deltas = _html.table(
            ["op", "change"],
            [(op, _html.verdict(n < 0, f"{n:+d}")) for op, n in self.op_deltas.items()],
        )
        rows = [
            ("nodes", f"{self.nodes_before} → {self.nodes_after}"),
            ("removed", ", ".join(self.removed[:12]) + (" …" if len(self.removed) > 12 else "")),
            ("added", ", ".join(self.added[:12]) + (" …" if len(self.added) > 12 else "")),
            ("fused", ", ".join(f"{k} ×{v}" for k, v in self.fused.items()) or "–"),
            ("weights", f"{_html.human_bytes(self.weight_bytes[0])} → "
                        f"{_html.human_bytes(self.weight_bytes[1])}"),
            ("file", f"{_html.human_bytes(self.size_bytes[0])} → "
                     f"{_html.human_bytes(self.size_bytes[1])}"),
            ("max |Δ output|", ", ".join(f"{o.output}: {o.max_abs:.3g}" for o in self.outputs)),
        ]  # fmt: skip
        body = f'<div style="display:flex;gap:24px">{_html.fields(rows)}{deltas}</div>'
        return _html.card(f"Diff {self.a} → {self.b}", body)


def diff(a: Artifact, b: Artifact, inputs: Any = None) -> GraphDiff:
    """Compare two ONNX artifacts: nodes, operators, weights, and outputs on one input.

    Args:
        a: The "before" artifact.
        b: The "after" artifact (e.g. ``nbd.optimize(a)``).
        inputs: Inputs to compare outputs on; ``a``'s stored example, else random
            inputs of the right shape and dtype.
    """
    sa, sb = inspect(a, macs=False), inspect(b, macs=False)  # diff shows no MACs
    names_a = {n.name for n in a.onnx.graph.node}
    names_b = {n.name for n in b.onnx.graph.node}
    deltas = Counter(sb.ops)
    deltas.subtract(sa.ops)
    feed = (
        as_feed(inputs, a.inputs) if inputs is not None
        else a.example if a.example is not None else random_feed(a.inputs)
    )  # fmt: skip
    got, want = b.run(feed), a.run(feed)
    shared = {k: v for k, v in want.items() if k in got}
    passes = b.report.passes if isinstance(b.report, OptimizationReport) else ()
    fused = {f"{p.name}: {rule}": n for p in passes for rule, n in p.fired.items()}
    return GraphDiff(
        a=a.variant, b=b.variant, nodes_before=sa.nodes, nodes_after=sb.nodes,
        op_deltas={op: n for op, n in sorted(deltas.items()) if n},
        removed=tuple(sorted(names_a - names_b)), added=tuple(sorted(names_b - names_a)),
        fused=fused,
        weight_bytes=(sum(sa.parameter_bytes.values()), sum(sb.parameter_bytes.values())),
        size_bytes=(sa.size_bytes, sb.size_bytes),
        outputs=tuple(
            compare_outputs(got, shared, batch_size=batch_size(feed), atol=0.0, rtol=0.0)
        ),
    )  # fmt: skip
