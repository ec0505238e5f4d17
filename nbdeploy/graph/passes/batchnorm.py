"""BatchNormalization that no Conv/Gemm absorbed → scale and shift.

In inference ``BN(x) = x·γ' + β'`` with ``γ' = γ/√(σ²+ε)`` and ``β' = β − μ·γ/√(σ²+ε)``,
broadcast over the channel axis (1). After a ``MatMul`` with constant weights (channels
on the last axis of a rank-2 result), the scale folds into the weights as well, leaving
``MatMul(x, W·γ') + β'``. Anything else (training mode, non-constant statistics, an
unknown rank) is left alone, and the check says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter._ir_utils import get_const_value
from onnxscript.rewriter._rewrite_rule import RewriteRuleClassBase

from ._base import RulePass


def _scale_shift(node: ir.Node) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (v.const_value.numpy() for v in node.inputs[1:5])  # type: ignore[union-attr]
    eps = node.attributes.get_float("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + np.asarray(eps, dtype=var.dtype))
    return scale, beta - mean * scale


def _check_bn(x: ir.Value, params: list[ir.Value], bn_out: ir.Value) -> MatchResult:
    result = MatchResult()
    node = bn_out.producer()
    if node is None or node.attributes.get_int("training_mode"):
        return result.fail("BatchNormalization in training mode")
    if any(get_const_value(p) is None for p in params):
        return result.fail("BatchNormalization parameters are not constants")
    if x.shape is None or len(x.shape) < 2:
        return result.fail("the input's rank is unknown")
    return result


class _StandaloneBn(RewriteRuleClassBase):
    """BatchNormalization(x) → Mul(x, γ') + β'."""

    def pattern(self, op: Any, x: Any, g: Any, b: Any, m: Any, v: Any) -> Any:
        return op.BatchNormalization(
            x, g, b, m, v, _allow_other_attributes=True, _outputs=["bn_out"]
        )

    def check(
        self,
        context: Any,
        x: ir.Value,
        g: ir.Value,
        b: ir.Value,
        m: ir.Value,
        v: ir.Value,
        bn_out: ir.Value,
    ) -> MatchResult:
        return _check_bn(x, [g, b, m, v], bn_out)

    def rewrite(
        self,
        op: Any,
        x: ir.Value,
        g: ir.Value,
        b: ir.Value,
        m: ir.Value,
        v: ir.Value,
        bn_out: ir.Value,
    ) -> Any:
        scale, shift = _scale_shift(bn_out.producer())  # type: ignore[arg-type]
        rank = len(x.shape)  # type: ignore[arg-type]
        shape = (-1,) + (1,) * (rank - 2)
        scale_c = op.initializer(ir.tensor(scale.reshape(shape)), f"{bn_out.name}_scale")
        shift_c = op.initializer(ir.tensor(shift.reshape(shape)), f"{bn_out.name}_shift")
        return op.Add(op.Mul(x, scale_c), shift_c)


class _MatMulBn(RewriteRuleClassBase):
    """BatchNormalization(MatMul(x, W)) on a rank-2 result → MatMul(x, W·γ') + β'."""

    def pattern(self, op: Any, x: Any, w: Any, g: Any, b: Any, m: Any, v: Any) -> Any:
        return op.BatchNormalization(
            op.MatMul(x, w, _outputs=["mm_out"]), g, b, m, v,
            _allow_other_attributes=True, _outputs=["bn_out"],
        )  # fmt: skip

    def check(
        self,
        context: Any,
        x: ir.Value,
        w: ir.Value,
        g: ir.Value,
        b: ir.Value,
        m: ir.Value,
        v: ir.Value,
        mm_out: ir.Value,
        bn_out: ir.Value,
    ) -> MatchResult:
        result = _check_bn(mm_out, [g, b, m, v], bn_out)
        if not result:
            return result
        if mm_out.shape is None or len(mm_out.shape) != 2:
            return result.fail("MatMul result is not rank 2 (channels would not be last)")
        weight = get_const_value(w)
        if weight is None or len(weight.shape) != 2:
            return result.fail("MatMul weight is not a constant matrix")
        return result

    def rewrite(
        self,
        op: Any,
        x: ir.Value,
        w: ir.Value,
        g: ir.Value,
        b: ir.Value,
        m: ir.Value,
        v: ir.Value,
        mm_out: ir.Value,
        bn_out: ir.Value,
    ) -> Any:
        scale, shift = _scale_shift(bn_out.producer())  # type: ignore[arg-type]
        weight = w.const_value.numpy() * scale  # type: ignore[union-attr]
        w_c = op.initializer(ir.tensor(weight.astype(scale.dtype)), f"{w.name}_bn")
        shift_c = op.initializer(ir.tensor(shift), f"{bn_out.name}_shift")
        return op.Add(op.MatMul(x, w_c), shift_c)


class BatchNormToAffine(RulePass):
    """Fold BatchNormalization after MatMul; turn any other into a Mul and an Add."""

    name = "batchnorm-to-affine"
    description = "BatchNormalization → scale/shift, folded into a MatMul before it"

    def rules(self) -> Mapping[str, object]:  # type: ignore[override]
        return {
            "MatMul+BatchNormalization": _MatMulBn.rule(),
            "BatchNormalization→Mul+Add": _StandaloneBn.rule(),
        }
