"""nbdeploy's graph passes, one family per file, each an ``onnx_ir`` in-place pass."""

from __future__ import annotations

from ._base import (
    LOOP_AND_SEQUENCE_OPS,
    CountingPass,
    RulePass,
    count_nodes,
    count_request_nodes,
    request_nodes,
)
from .batchnorm import BatchNormToAffine
from .cleanup import CommonSubexpressionElimination, DeadCodeElimination
from .constant_folding import ConstantFolding
from .conv_bn import ConvBnFusion
from .noop import NoOpElimination
from .simplify import ShapeSimplification

__all__ = [
    "LOOP_AND_SEQUENCE_OPS",
    "BatchNormToAffine",
    "CommonSubexpressionElimination",
    "ConstantFolding",
    "ConvBnFusion",
    "CountingPass",
    "DeadCodeElimination",
    "NoOpElimination",
    "RulePass",
    "ShapeSimplification",
    "count_nodes",
    "count_request_nodes",
    "request_nodes",
]
