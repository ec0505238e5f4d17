"""Conv/ConvTranspose/Gemm followed by BatchNormalization → one node with folded weights.

For ``y = BN(Conv(x))`` (and the seed's ``ReLU(BN(Conv(x)))``, whose ReLU simply stays):
``W' = W·γ/√(σ²+ε)`` per output channel and ``b' = (b − μ)·γ/√(σ²+ε) + β``.
The rules are onnxscript's, and ours (``computed_bn``) where the weights or statistics are
computed by constant subgraphs; a BatchNormalization in training mode, or with weights
that depend on an input, is left alone. A Mul or Add by one constant per output channel
folds the same way (``computed_affine``).
"""

from __future__ import annotations

from collections.abc import Mapping

from onnxscript.rewriter.rules.common import (
    fuse_batchnorm_into_conv_rule,
    fuse_batchnorm_into_conv_transpose_rule,
    fuse_batchnorm_into_gemm_rule,
)

from ._base import RulePass
from .computed_affine import computed_affine_rules
from .computed_bn import computed_bn_rules


class ConvBnFusion(RulePass):
    """Fold BatchNormalization, or a per-channel Mul/Add by constants, into the Conv,
    ConvTranspose or Gemm before it."""

    name = "conv-bn-fusion"
    description = "Conv/ConvTranspose/Gemm + BatchNormalization (or Mul/Add per channel) → one node"

    def rules(self) -> Mapping[str, object]:  # type: ignore[override]
        return {
            "Conv+BatchNormalization": fuse_batchnorm_into_conv_rule,
            "ConvTranspose+BatchNormalization": fuse_batchnorm_into_conv_transpose_rule,
            "Gemm+BatchNormalization": fuse_batchnorm_into_gemm_rule,
            **computed_bn_rules(),
            **computed_affine_rules(),
        }
