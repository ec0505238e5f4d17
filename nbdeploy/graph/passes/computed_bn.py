"""BatchNormalization fused into a Conv/Gemm whose weights are computed, not stored.

Exporters with folding off, weight generators and some quantizers write weights as
constant subgraphs (``Range → Sin → Reshape``, ``ConstantOfShape``, ``Expand`` …). Folding
them would make a few-kB file as large as its weights, so the fusion rewrites the constant
side instead: ``W' = W · s`` (``s = γ/√(σ²+ε)`` per output channel) and
``b' = (b − μ) · s + β`` are appended as constant-only nodes, which onnxruntime folds when
it loads the model. The per-request path loses the BatchNormalization; the file gains a
handful of nodes.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._rewrite_rule import RewriteRuleClassBase

# Values from these are not the same on every run: never treat them as constants.
_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli"})  # fmt: skip


def is_constant(value: ir.Value | None, seen: dict[ir.Value, bool] | None = None) -> bool:
    """True when ``value`` depends on no graph input: an initializer, a Constant, or a
    node (without subgraphs, not random) whose inputs are all constant."""
    if value is None:
        return True  # an omitted optional input
    seen = {} if seen is None else seen
    if value in seen:
        return seen[value]
    node = value.producer()
    if value.is_graph_input():
        answer = False
    elif node is None:
        answer = value.const_value is not None
    else:
        answer = (
            node.domain in ("", "ai.onnx")
            and node.op_type not in _RANDOM
            and not any(a.type in _GRAPH_ATTRS for a in node.attributes.values())
            and all(is_constant(v, seen) for v in node.inputs)
        )
    seen[value] = answer
    return answer


_GRAPH_ATTRS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def channel_axis(node: ir.Node) -> int:
    """The weight axis of the output channels: 0 for Conv, Gemm's per its transB."""
    if node.op_type == "Conv":
        return 0
    return 0 if node.attributes.get_int("transB", 0) else 1


def weight_rank(node: ir.Node) -> int | None:
    weight = node.inputs[1]
    assert weight is not None
    if weight.shape is not None:
        return len(weight.shape)
    if node.op_type == "Gemm":
        return 2
    kernel = node.attributes.get_ints("kernel_shape")
    return len(kernel) + 2 if kernel else None


class _ComputedBn(RewriteRuleClassBase):
    """BatchNormalization(Conv|Gemm(x, W[, b])) with computed constants → Conv|Gemm(x, W', b')."""

    def __init__(self, op_type: str) -> None:
        super().__init__(f"{op_type}+BatchNormalization (computed weights)")
        self.op_type = op_type

    def pattern(self, op: Any, x: Any) -> Any:
        inbound = getattr(op, self.op_type)(x, _allow_other_inputs=True, _outputs=["inbound_out"])
        return op.BatchNormalization(
            inbound, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["bn_out"]
        )

    def check(
        self, context: Any, x: ir.Value, inbound_out: ir.Value, bn_out: ir.Value
    ) -> MatchResult:
        result = MatchResult()
        inbound, bn = inbound_out.producer(), bn_out.producer()
        assert inbound is not None and bn is not None
        if bn.attributes.get_int("training_mode", 0) or len(bn.outputs) > 1:
            return result.fail("BatchNormalization in training mode")
        if len(bn.inputs) != 5 or len(inbound.inputs) < 2:
            return result.fail("BatchNormalization or the node before it lacks inputs")
        seen: dict[ir.Value, bool] = {}
        if not all(is_constant(v, seen) for v in [*inbound.inputs[1:], *bn.inputs[1:]]):
            return result.fail("weights or BatchNormalization statistics depend on an input")
        if weight_rank(inbound) is None:
            return result.fail("the weight's rank is unknown")
        weight, gamma = inbound.inputs[1], bn.inputs[1]
        if weight is None or weight.dtype is None or gamma is None or gamma.dtype != weight.dtype:
            return result.fail("the weight's type is unknown or not the statistics' type")
        return result

    def rewrite(self, op: Any, x: ir.Value, inbound_out: ir.Value, bn_out: ir.Value) -> Any:
        inbound, bn = inbound_out.producer(), bn_out.producer()
        assert inbound is not None and bn is not None
        gamma, beta, mean, var = bn.inputs[1:]
        weight = inbound.inputs[1]
        assert weight is not None and weight.dtype is not None
        eps = bn.attributes.get_float("epsilon", 1e-5)
        epsilon = op.initializer(ir.tensor([eps], dtype=weight.dtype), f"{bn_out.name}_eps")
        scale = op.Div(gamma, op.Sqrt(op.Add(var, epsilon)))
        rank, axis = weight_rank(inbound), channel_axis(inbound)
        assert rank is not None
        dims = [-1 if i == axis else 1 for i in range(rank)]
        shape = op.initializer(ir.tensor(dims, dtype=ir.DataType.INT64), f"{bn_out.name}_shape")
        new_weight = op.Mul(weight, op.Reshape(scale, shape))
        attributes = dict(inbound.attributes)
        gemm_beta = attributes.pop("beta", None)
        bias = inbound.inputs[2] if len(inbound.inputs) > 2 else None
        if bias is not None and gemm_beta is not None and gemm_beta.as_float() != 1.0:
            factor = ir.tensor([gemm_beta.as_float()], dtype=weight.dtype)
            bias = op.Mul(bias, op.initializer(factor, f"{bn_out.name}_beta"))
        centred = op.Neg(mean) if bias is None else op.Sub(bias, mean)
        new_bias = op.Add(op.Mul(centred, scale), beta)
        return op.op(self.op_type, x, new_weight, new_bias, **attributes)


def computed_bn_rules() -> dict[str, Any]:
    """The rules, by the name shown in reports."""
    return {
        f"{op_type}+BatchNormalization (computed weights)": _ComputedBn.rule(op_type)
        for op_type in ("Conv", "Gemm")
    }
