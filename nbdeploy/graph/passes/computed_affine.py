"""A per-channel Mul or Add by constants after a Conv/Gemm (a Mul after a MatMul by a
matrix), folded into its weights.

``Mul(Conv(x, W, b), s)`` is ``Conv(x, W·s, b·s)`` and ``Add(Conv(x, W, b), t)`` is
``Conv(x, W, b + t)`` when ``s``/``t`` hold one value per output channel (or one in all).
As for BatchNormalization (:mod:`.computed_bn`), the new weight and bias are written as
constant-only nodes — onnxruntime folds them when it loads the model, constant folding
folds them here when that does not grow the file — so no node is added per request and
weights computed by constant subgraphs stay computed.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._rewrite_rule import RewriteRuleClassBase

from .computed_bn import channel_axis, is_constant, weight_rank


class _AffineAfter(RewriteRuleClassBase):
    """``Mul|Add(Conv|Gemm(x, W[, b]), c)`` with constant ``W``, ``b``, ``c`` → one node."""

    def __init__(self, op_type: str, affine: str) -> None:
        super().__init__(f"{op_type}+{affine} (constant per channel)")
        self.op_type, self.affine = op_type, affine

    def pattern(self, op: Any, x: Any, c: Any) -> Any:
        inbound = getattr(op, self.op_type)(x, _allow_other_inputs=True, _outputs=["inbound_out"])
        return getattr(op, self.affine)(inbound, c)

    def check(self, context: Any, x: ir.Value, c: ir.Value, inbound_out: ir.Value) -> MatchResult:
        result = MatchResult()
        inbound = inbound_out.producer()
        assert inbound is not None
        if len(inbound.inputs) < 2 or weight_rank(inbound) is None:
            return result.fail("the weight or its rank is unknown")
        if inbound.op_type == "MatMul" and weight_rank(inbound) != 2:
            return result.fail("MatMul with a weight that is not a matrix")
        if inbound.op_type == "Gemm" and inbound.attributes.get_float("alpha", 1.0) != 1.0:
            return result.fail("Gemm with alpha ≠ 1")
        seen: dict[ir.Value, bool] = {}
        if not all(is_constant(v, seen) for v in [*inbound.inputs[1:], c]):
            return result.fail("the weights or the other operand depend on an input")
        weight = inbound.inputs[1]
        assert weight is not None
        if c.dtype is None or c.dtype != weight.dtype:
            return result.fail("the operand's type is unknown or not the weight's")
        if not _per_channel(c, inbound_out, -1 if inbound.op_type == "MatMul" else 1):
            return result.fail("the operand is not one value per output channel")
        return result

    def rewrite(self, op: Any, x: ir.Value, c: ir.Value, inbound_out: ir.Value) -> Any:
        inbound = inbound_out.producer()
        assert inbound is not None
        weight = inbound.inputs[1]
        assert weight is not None and weight.dtype is not None
        flat = op.Reshape(c, op.initializer(ir.tensor([-1]), f"{inbound_out.name}_flat"))
        attributes = dict(inbound.attributes)
        bias = _bias(op, inbound, attributes.pop("beta", None), f"{inbound_out.name}")
        if self.affine == "Mul":
            rank, axis = weight_rank(inbound), channel_axis(inbound)
            assert rank is not None
            dims = [-1 if i == axis else 1 for i in range(rank)]
            shape = op.initializer(ir.tensor(dims), f"{inbound_out.name}_scale_shape")
            weight = op.Mul(weight, op.Reshape(flat, shape))
            bias = None if bias is None else op.Mul(bias, flat)
        else:
            channels = op.Slice(
                op.Shape(weight), *_axis_range(op, channel_axis(inbound), inbound_out.name)
            )
            shift = op.Expand(flat, channels)
            bias = shift if bias is None else op.Add(bias, shift)
        inputs = [x, weight] if bias is None else [x, weight, bias]
        return op.op(self.op_type, *inputs, **attributes)


def _bias(op: Any, node: ir.Node, beta: ir.Attr | None, name: str) -> Any:
    """The node's bias, with Gemm's ``beta`` applied (it is dropped from the new node)."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is None or beta is None or beta.as_float() == 1.0:
        return bias
    weight = node.inputs[1]
    assert weight is not None and weight.dtype is not None
    factor = ir.tensor([beta.as_float()], dtype=weight.dtype)
    return op.Mul(bias, op.initializer(factor, f"{name}_beta"))


def _axis_range(op: Any, axis: int, name: str | None) -> tuple[Any, Any]:
    start = op.initializer(ir.tensor([axis]), f"{name}_channel_start")
    end = op.initializer(ir.tensor([axis + 1]), f"{name}_channel_end")
    return start, end


def _per_channel(c: ir.Value, out: ir.Value, axis: int) -> bool:
    """True when ``c`` broadcasts over ``out`` one value per channel (``out``'s ``axis``),
    or is one value in all, and so leaves ``out``'s shape as it is."""
    if c.shape is None or out.shape is None:
        return False
    dims, rank = list(c.shape), len(out.shape)
    if any(not isinstance(d, int) for d in dims) or len(dims) > rank:
        return False
    if all(d == 1 for d in dims):
        return True
    axis %= rank
    channel = len(dims) - (rank - axis)  # where the output's axis falls in c, if at all
    return (
        channel >= 0
        and dims[channel] == out.shape[axis]
        and all(d == 1 for i, d in enumerate(dims) if i != channel)
    )


def computed_affine_rules() -> dict[str, Any]:
    """The rules, by the name shown in reports."""
    pairs = [("Conv", "Mul"), ("Conv", "Add"), ("Gemm", "Mul"), ("Gemm", "Add"), ("MatMul", "Mul")]
    return {
        f"{op_type}+{affine} (constant per channel)": _AffineAfter.rule(op_type, affine)
        for op_type, affine in pairs
    }
