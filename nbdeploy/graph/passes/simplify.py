"""Shape arithmetic and chains of data-movement ops, simplified.

Exporters trace dynamic shapes as small subgraphs (``Shape → Gather → Concat →
Reshape``). Where the output shape can be proven from the input's (symbolic) shape,
the target is written as a constant and the subgraph dies. Chains that cancel or merge
(Reshape∘Reshape, Transpose∘Transpose, Cast∘Cast, Unsqueeze∘Unsqueeze, successive
Relu/Clip, consecutive Slices) become one op. The rules are onnxscript's.
"""

from __future__ import annotations

from collections.abc import Mapping

from onnxscript.rewriter.rules.common import (
    cast_cast_rule,
    collapse_slice2_rule,
    collapse_slice_rule,
    materialize_reshape_shape_rule,
    reshape_reshape_rule,
    squeeze_reshape_1d_rule,
    successive_clip_relu_rule,
    successive_clip_rule,
    successive_relu_clip_rule,
    successive_relu_rule,
    transpose_transpose_rule,
    unsqueeze_unsqueeze_rule,
)

from ._base import RulePass


class ShapeSimplification(RulePass):
    """Constant Reshape targets where provable; merge or cancel chained data-movement ops."""

    name = "shape-simplification"
    description = "computed Reshape shapes made constant; Reshape/Transpose/Cast chains merged"

    def rules(self) -> Mapping[str, object]:  # type: ignore[override]
        return {
            "Reshape (shape made constant)": materialize_reshape_shape_rule,
            "Reshape∘Reshape": reshape_reshape_rule,
            "Transpose∘Transpose": transpose_transpose_rule,
            "Cast∘Cast": cast_cast_rule,
            "Unsqueeze∘Unsqueeze": unsqueeze_unsqueeze_rule,
            "Squeeze→Reshape (1-D)": squeeze_reshape_1d_rule,
            "Slice∘Slice": collapse_slice_rule,
            "Slice (no-op)": collapse_slice2_rule,
            "Relu∘Relu": successive_relu_rule,
            "Relu∘Clip": successive_relu_clip_rule,
            "Clip∘Relu": successive_clip_relu_rule,
            "Clip∘Clip": successive_clip_rule,
        }
