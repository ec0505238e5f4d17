"""Constant folding: compute once, at optimization time, what depends only on constants.

onnxscript's folder does the work. The file never balloons: a result larger than
``grow_limit`` elements is written only when it replaces inputs at least as large (a
Transpose of a weight used once), so weights computed by constant subgraphs (``Range``,
``ConstantOfShape``, ``Expand`` of small constants) stay computed; onnxruntime folds them
when it loads the model. ``ConstantFolding(grow_limit=size_limit)`` folds everything.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.optimizer._constant_folding import FoldConstantsPass

from ._base import LOOP_AND_SEQUENCE_OPS, CountingPass, count_nodes

DEFAULT_SIZE_LIMIT = 1 << 20  # elements: folding never reads a constant larger than this
DEFAULT_GROW_LIMIT = 1 << 10  # elements: a larger result is written only if the file shrinks


# Kept out of folding: If (the folder mis-inlined branches in the node-test sweep) and
# loops/sequences. Some sequence evaluators still run before `should_fold` is asked and
# can raise; the optimize pipeline then rolls this pass back and reports it.
_NOT_FOLDED = LOOP_AND_SEQUENCE_OPS | {"If"}


def _should_fold(node: ir.Node) -> bool | None:
    """False for ops the folder mishandles; None lets it decide for everything else."""
    return False if node.op_type in _NOT_FOLDED and node.domain in ("", "ai.onnx") else None


class ConstantFolding(CountingPass):
    """Fold subgraphs whose inputs are all constants into initializers, unless that makes
    the file larger by more than a small constant each."""

    name = "constant-folding"
    description = "precompute nodes whose inputs are all constant (size-limited)"

    def __init__(
        self, size_limit: int = DEFAULT_SIZE_LIMIT, grow_limit: int = DEFAULT_GROW_LIMIT
    ) -> None:
        super().__init__()
        self.size_limit = size_limit
        self.grow_limit = grow_limit

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = count_nodes(model.graph)
        folder = FoldConstantsPass(
            shape_inference=True,
            input_size_limit=self.size_limit,
            output_size_limit=self.grow_limit,
            should_fold=_should_fold,
        )
        result = folder(model)
        self.record("nodes folded", before - count_nodes(model.graph))
        return ir.passes.PassResult(model, result.modified)
