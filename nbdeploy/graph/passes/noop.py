"""Nodes that do nothing: Identity, Dropout in inference, Reshape to the same shape,
Transpose with the identity permutation, Cast to the same type, Expand to the same shape,
adding zeros or multiplying by ones (a bias that is all zeros).

Each rule rewrites its no-op into an Identity; onnx-ir's identity elimination then
removes the Identities, keeping graph output names intact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._ir_utils import get_const_value
from onnxscript.rewriter._rewrite_rule import RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter.rules.common import (
    no_op_cast_rule,
    no_op_expand_rule,
    no_op_transpose_rule,
)

from ._base import RulePass
from .symbolic_shapes import is_named


class _InferenceDropout(RewriteRuleClassBase):
    """Dropout without training mode (and with its mask unused) is the identity."""

    def pattern(self, op: Any, x: Any) -> Any:
        return op.Dropout(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["y"])

    def check(self, context: Any, x: ir.Value, y: ir.Value) -> MatchResult:
        result = MatchResult()
        node = y.producer()
        assert node is not None
        if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
            return result.fail("the dropout mask is used")
        training = node.inputs[2] if len(node.inputs) > 2 else None
        if training is not None:
            value = get_const_value(training)
            if value is None or bool(value.numpy()):
                return result.fail("training_mode is not a constant false")
        return result

    def rewrite(self, op: Any, x: ir.Value, y: ir.Value) -> Any:
        return op.Identity(x)


class _SameShapeReshape(RewriteRuleClassBase):
    """Reshape whose target shape equals the input's shape, or whose output is proven to
    have the input's shape (dim by dim, the same numbers and the same named symbols)."""

    def pattern(self, op: Any, x: Any, shape: Any) -> Any:
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["y"])

    def check(self, context: Any, x: ir.Value, shape: ir.Value, y: ir.Value) -> MatchResult:
        result = MatchResult()
        if same_known_shape(x.shape, y.shape):
            return result
        target = get_const_value(shape)
        if target is None or x.shape is None:
            return result.fail("target shape or input shape unknown")
        want = [int(d) for d in target.numpy().reshape(-1)]
        have = list(x.shape)
        if len(want) != len(have):
            return result.fail("rank changes")
        unresolved = 0
        for dim, size in zip(have, want, strict=True):
            if isinstance(dim, int) and size in (dim, 0):
                continue
            if size == -1 or (size == 0 and not isinstance(dim, int)):
                unresolved += size == -1
                continue
            return result.fail(f"dimension {dim} becomes {size}")
        if unresolved > 1:
            return result.fail("more than one inferred dimension")
        return result

    def rewrite(self, op: Any, x: ir.Value, shape: ir.Value, y: ir.Value) -> Any:
        return op.Identity(x)


def same_known_shape(a: ir.Shape | None, b: ir.Shape | None) -> bool:
    """True when both shapes are known, dim by dim, and equal: numbers, or symbols of the
    same name (a dim no inference could name, ``unk__…`` or blank, is never equal)."""
    if a is None or b is None or len(a) != len(b):
        return False
    return all(
        (isinstance(d, int) and d == e) or (named(d) and named(e) and d == e)
        for d, e in zip(a, b, strict=True)
    )


def named(dim: int | ir.SymbolicDim) -> bool:
    """A symbolic dim that an inference named for a reason (not ``unk__…``, not blank)."""
    return isinstance(dim, ir.SymbolicDim) and is_named(dim.value)


class _NeutralOperand(RewriteRuleClassBase):
    """``x + 0``, ``x - 0``, ``x · 1``, ``x / 1`` with a constant of any shape (a zero bias
    vector included) whose broadcast leaves ``x``'s shape as it is."""

    def __init__(self, op_type: str, neutral: float, *, constant_first: bool = False) -> None:
        side = "left" if constant_first else "right"
        super().__init__(f"{op_type} by {neutral:g} ({side})")
        self.op_type, self.neutral, self.constant_first = op_type, neutral, constant_first

    def pattern(self, op: Any, x: Any, c: Any) -> Any:
        operands = (c, x) if self.constant_first else (x, c)
        return getattr(op, self.op_type)(*operands)

    def check(self, context: Any, x: ir.Value, c: ir.Value) -> MatchResult:
        result = MatchResult()
        constant = get_const_value(c)
        if constant is None:
            return result.fail("the other operand is not a constant")
        if not np.all(constant.numpy() == self.neutral):
            return result.fail(f"the constant is not all {self.neutral:g}")
        dims = list(constant.shape)
        if all(d == 1 for d in dims) and x.shape is not None and len(dims) <= len(x.shape):
            return result
        if x.shape is None or len(dims) > len(x.shape):
            return result.fail("the broadcast could change the shape")
        if any(d not in (1, x.shape[-len(dims) + i]) for i, d in enumerate(dims)):
            return result.fail("the broadcast could change the shape")
        return result

    def rewrite(self, op: Any, x: ir.Value, c: ir.Value) -> Any:
        return op.Identity(x)


def _neutral_rules() -> dict[str, RewriteRuleSet]:
    def both_sides(op_type: str, neutral: float) -> RewriteRuleSet:
        return RewriteRuleSet([
            _NeutralOperand.rule(op_type, neutral),
            _NeutralOperand.rule(op_type, neutral, constant_first=True),
        ])  # fmt: skip

    return {
        "Add of zeros": both_sides("Add", 0),
        "Sub of zeros": RewriteRuleSet([_NeutralOperand.rule("Sub", 0)]),
        "Mul by ones": both_sides("Mul", 1),
        "Div by ones": RewriteRuleSet([_NeutralOperand.rule("Div", 1)]),
    }


class _SafeIdentityElimination(IdentityEliminationPass):
    """onnx-ir's identity elimination, minus two cases it gets wrong.

    When ``y = Identity(x)`` is a graph output, onnx-ir renames ``x`` to ``y``. That breaks
    the model if ``x`` belongs to an outer graph (a subgraph output that passes a captured
    value through) or is itself an output of the graph; such Identities stay.
    """

    def _try_eliminate_identity_node(self, node: ir.Node) -> bool:
        if node.op_type == "Identity" and node.domain == "" and len(node.inputs) == 1:
            x, y = node.inputs[0], node.outputs[0]
            if x is not None and y.is_graph_output():
                producer = x.producer()
                owner = producer.graph if producer is not None else x.graph
                if owner is not node.graph or x.is_graph_output():
                    return False
        return bool(super()._try_eliminate_identity_node(node))


class NoOpElimination(RulePass):
    """Remove Identity and every node that provably does nothing."""

    name = "no-op-elimination"
    description = (
        "Identity, inference Dropout, same-shape Reshape/Expand, identity Transpose, same-type Cast"
    )

    def rules(self) -> Mapping[str, object]:  # type: ignore[override]
        return {
            "Dropout (inference)": _InferenceDropout.rule(),
            "Reshape (same shape)": _SameShapeReshape.rule(),
            "Transpose (identity perm)": no_op_transpose_rule,
            "Cast (same type)": no_op_cast_rule,
            "Expand (same shape)": no_op_expand_rule,
            **_neutral_rules(),
        }

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        result = super().call(model)
        before = _identities(model)
        _SafeIdentityElimination()(model)
        self.record("Identity removed", before - _identities(model))
        return ir.passes.PassResult(model, result.modified or before != _identities(model))


def _identities(model: ir.Model) -> int:
    return sum(
        1
        for node in ir.traversal.RecursiveGraphIterator(model.graph)
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx")
    )
