"""Shape arithmetic and chains of data-movement ops, simplified.

Exporters trace dynamic shapes as small subgraphs (``Shape → Gather → Concat →
Reshape``). Where the output shape can be proven from the input's (symbolic) shape —
with onnxruntime's symbolic shape inference, which does arithmetic on dims
(:mod:`.symbolic_shapes`) — the target is written as a constant and the subgraph dies.
Chains that cancel or merge (Reshape∘Reshape, Transpose∘Transpose, Cast∘Cast,
Unsqueeze∘Unsqueeze, successive Relu/Clip, consecutive Slices) become one op, and a
Transpose that only moves axes of size 1 becomes a Reshape. Most rules are
onnxscript's; ours: the Transpose one, Unsqueeze∘Unsqueeze for any axes, and a Reshape
target with several symbolic dims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._ir_utils import get_const_value
from onnxscript.rewriter._rewrite_rule import RewriteRuleClassBase
from onnxscript.rewriter.rules.common import (
    cast_cast_rule,
    collapse_slice2_rule,
    collapse_slice_rule,
    reshape_reshape_rule,
    squeeze_reshape_1d_rule,
    successive_clip_relu_rule,
    successive_clip_rule,
    successive_relu_clip_rule,
    successive_relu_rule,
    transpose_transpose_rule,
)

from ._base import RulePass
from .noop import named
from .symbolic_shapes import prove, refine_shapes, replace_proven_numbers


class _UnitAxisTranspose(RewriteRuleClassBase):
    """A Transpose that moves only axes of size 1 keeps every element in place: it is a
    Reshape (which onnxruntime does without copying), and it merges with Reshapes around."""

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Transpose(x, _allow_other_attributes=True, _outputs=["y"])

    def check(self, context: Any, x: ir.Value, y: ir.Value) -> MatchResult:
        result = MatchResult()
        node = y.producer()
        assert node is not None
        perm = node.attributes.get_ints("perm")
        if x.shape is None or perm is None or len(perm) != len(x.shape):
            return result.fail("the input's shape or the permutation is unknown")
        moved = [axis for axis in perm if x.shape[axis] != 1]
        if moved != sorted(moved):
            return result.fail("the Transpose reorders axes larger than 1")
        if sum(not isinstance(x.shape[axis], int) for axis in perm) > 1:
            return result.fail("more than one axis has a symbolic size")
        return result

    def rewrite(self, op: Any, x: ir.Value, y: ir.Value) -> Any:
        node = y.producer()
        assert node is not None and x.shape is not None
        dims = [x.shape[axis] for axis in node.attributes.get_ints("perm", [])]
        target = [dim if isinstance(dim, int) else -1 for dim in dims]
        return op.Reshape(x, _ints(op, target, f"{y.name}_shape"))


class _ProvenReshape(RewriteRuleClassBase):
    """A Reshape whose target is computed but whose output shape is proven gets a constant
    target: numbers as they are, a symbol the input has at the same position as 0 (copy
    it), and at most one other symbol as -1. (onnxscript's rule allows one symbol in all.)"""

    def pattern(self, op: Any, x: Any, shape: Any) -> Any:
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["y"])

    def check(self, context: Any, x: ir.Value, shape: ir.Value, y: ir.Value) -> MatchResult:
        result = MatchResult()
        if get_const_value(shape) is not None:
            return result.fail("the target is already a constant")
        if y.shape is None:
            return result.fail("the output's shape is unknown")
        target = _reshape_target(x.shape, y.shape)
        if target is None:
            return result.fail("the output's shape has more than one unknown dim, or a 0")
        return result

    def rewrite(self, op: Any, x: ir.Value, shape: ir.Value, y: ir.Value) -> Any:
        assert y.shape is not None
        target = _reshape_target(x.shape, y.shape)
        assert target is not None
        return op.Reshape(x, _ints(op, target, f"{y.name}_shape"))


def _reshape_target(before: ir.Shape | None, after: ir.Shape) -> list[int] | None:
    target = []
    for axis, dim in enumerate(after):
        if isinstance(dim, int):
            if dim == 0:
                return None  # a real 0 would need allowzero, and then no 0 could copy
            target.append(dim)
        elif named(dim) and before is not None and axis < len(before) and before[axis] == dim:
            target.append(0)
        else:
            target.append(-1)
    return target if target.count(-1) <= 1 else None


class _UnsqueezeUnsqueeze(RewriteRuleClassBase):
    """``Unsqueeze(Unsqueeze(x, a), b)`` with constant axes of any length → one Unsqueeze
    (onnxscript's rule takes one non-negative axis each)."""

    def pattern(self, op: Any, x: Any, first: Any, second: Any) -> Any:
        return op.Unsqueeze(op.Unsqueeze(x, first), second, _outputs=["y"])

    def check(
        self, context: Any, x: ir.Value, first: ir.Value, second: ir.Value, y: ir.Value
    ) -> MatchResult:
        result = MatchResult()
        if get_const_value(first) is None or get_const_value(second) is None:
            return result.fail("the axes are not constant")
        if x.shape is None:
            return result.fail("the input's rank is unknown")
        return result

    def rewrite(self, op: Any, x: ir.Value, first: ir.Value, second: ir.Value, y: ir.Value) -> Any:
        assert x.shape is not None
        inner, outer = (_axes(v) for v in (first, second))
        middle_rank = len(x.shape) + len(inner)
        rank = middle_rank + len(outer)
        outer = [a % rank for a in outer]
        kept = [a for a in range(rank) if a not in outer]  # where the middle's axes land
        axes = sorted([*outer, *(kept[a % middle_rank] for a in inner)])
        return op.Unsqueeze(x, _ints(op, axes, f"{y.name}_axes"))


def _ints(op: Any, values: list[int], name: str) -> ir.Value:
    """An INT64 initializer (not a Constant node: the report counts nodes)."""
    value: ir.Value = op.initializer(ir.tensor(values, dtype=ir.DataType.INT64), name)
    return value


def _axes(value: ir.Value) -> list[int]:
    tensor = get_const_value(value)
    assert tensor is not None
    return [int(a) for a in tensor.numpy().reshape(-1)]


class ShapeSimplification(RulePass):
    """Constant Reshape targets where provable; merge or cancel chained data-movement ops."""

    name = "shape-simplification"
    description = "computed Reshape shapes made constant; Reshape/Transpose/Cast chains merged"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        facts = prove(model)  # first: the rules below read the shapes it proves
        proven = 0
        if facts is not None:
            self.record("shapes proven (symbolic arithmetic)", refine_shapes(model.graph, facts))
            proven = replace_proven_numbers(model.graph, facts)
            self.record("shape values proven constant", proven)
            if proven:
                RemoveUnusedNodesPass()(model)
        result = super().call(model)
        return ir.passes.PassResult(model, result.modified or proven > 0)

    def rules(self) -> Mapping[str, object]:  # type: ignore[override]
        return {
            "Reshape (shape made constant)": _ProvenReshape.rule(),
            "Reshape∘Reshape": reshape_reshape_rule,
            "Transpose∘Transpose": transpose_transpose_rule,
            "Transpose of size-1 axes→Reshape": _UnitAxisTranspose.rule(),
            "Cast∘Cast": cast_cast_rule,
            "Unsqueeze∘Unsqueeze": _UnsqueezeUnsqueeze.rule(),
            "Squeeze→Reshape (1-D)": squeeze_reshape_1d_rule,
            "Slice∘Slice": collapse_slice_rule,
            "Slice (no-op)": collapse_slice2_rule,
            "Relu∘Relu": successive_relu_rule,
            "Relu∘Clip": successive_relu_clip_rule,
            "Clip∘Relu": successive_clip_relu_rule,
            "Clip∘Clip": successive_clip_rule,
        }
