"""Dead code (nodes and initializers nothing uses) and common subexpressions, via onnx-ir."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import (
    CommonSubexpressionEliminationPass,
    LiftConstantsToInitializersPass,
    RemoveUnusedNodesPass,
    RemoveUnusedOpsetsPass,
)

from ._base import CountingPass, count_nodes


class DeadCodeElimination(CountingPass):
    """Remove nodes whose outputs nothing uses, unused initializers and opset imports;
    turn Constant nodes into initializers (they are data, not computation)."""

    name = "dead-code-elimination"
    description = "unused nodes, initializers and opsets; Constant nodes → initializers"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        nodes = count_nodes(model.graph)
        modified = LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(
            model
        ).modified
        self.record("Constant → initializer", nodes - count_nodes(model.graph))
        nodes, weights = count_nodes(model.graph), len(model.graph.initializers)
        modified |= RemoveUnusedNodesPass()(model).modified
        modified |= RemoveUnusedOpsetsPass()(model).modified
        self.record("nodes removed", nodes - count_nodes(model.graph))
        self.record("initializers removed", weights - len(model.graph.initializers))
        return ir.passes.PassResult(model, modified)


class CommonSubexpressionElimination(CountingPass):
    """Merge nodes that compute the same thing from the same inputs."""

    name = "common-subexpression-elimination"
    description = "identical nodes on identical inputs merged"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = count_nodes(model.graph)
        modified = CommonSubexpressionEliminationPass()(model).modified
        self.record("nodes merged", before - count_nodes(model.graph))
        return ir.passes.PassResult(model, modified)
