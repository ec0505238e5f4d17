"""The never-bloat rule: an optimization pass may not make the file much larger.

Folding a weight that a constant subgraph computes (``Range → Sin → Reshape``) turns a few
bytes of graph into the whole tensor: onnxslim makes a 4 kB AlexNet 244 MB that way.
onnxruntime folds such subgraphs when it loads the model anyway, so nothing is gained per
request. A pass whose result stores more than ``max(1.3 × the file, the file + 1 MiB)``
is rolled back (``nbd.optimize(..., allow_growth=True)`` keeps it).
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

_FACTOR = 1.3
_SLACK = 1 << 20  # bytes


@dataclasses.dataclass(frozen=True)
class GrowthLimit:
    """How many bytes of tensors a model may store at most after a pass."""

    file_bytes: int  # the input artifact's file
    stored_before: int  # the tensors the input stores
    allowed: int  # tensor bytes a pass may leave at most

    @classmethod
    def of(cls, model: ir.Model, file_bytes: int) -> GrowthLimit:
        """The limit for optimizing ``model``, whose file takes ``file_bytes``."""
        stored = stored_bytes(model)
        limit = max(int(_FACTOR * file_bytes), file_bytes + _SLACK)
        return cls(file_bytes, stored, stored + limit - file_bytes)

    def breach(self, model: ir.Model) -> str | None:
        """Why ``model`` breaks the rule, or ``None`` when it keeps it."""
        stored = stored_bytes(model)
        if stored <= self.allowed:
            return None
        grown = self.file_bytes + stored - self.stored_before
        return (
            f"it would make the file {_mb(grown)} from {_mb(self.file_bytes)} (the limit is "
            f"{_mb(self.file_bytes + self.allowed - self.stored_before)}); "
            f"allow_growth=True keeps such a pass"
        )


def stored_bytes(model: ir.Model) -> int:
    """Bytes of the tensors a model stores: initializers and Constant nodes' values, in
    subgraphs too (next to them the graph's own bytes are small)."""
    total = 0
    for graph in (model.graph, *model.graph.subgraphs()):
        total += sum(v.const_value.nbytes for v in graph.initializers.values() if v.const_value)
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            tensors = [a for a in node.attributes.values() if a.type == ir.AttributeType.TENSOR]
            total += sum(a.value.nbytes for a in tensors)
    return total


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB" if size >= 1 << 20 else f"{size / 1024:.0f} kB"
