"""int4-matmul: which weights onnxruntime's ``MatMulNBits`` takes, and what it did to them.

onnxruntime's quantizer (called in :mod:`.ort_adapter`) rewrites every ``MatMul`` whose
weight is a constant and, on request, every ``Gather``. This module decides beforehand
which nodes it should take and says why the others stay float, turns plain ``Gemm``
nodes (where ``nn.Linear`` on 2-D inputs lands) into ``MatMul`` so they qualify, and
reads the 4-bit blocks back afterwards to measure each weight's error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import _onnxio
from ..errors import ConfigError
from . import nbits, ort_adapter
from .schemes import Int4MatMul
from .weights import TensorError, error_of

__all__ = ["Outcome", "int4_matmul"]

_FLOAT = onnx.TensorProto.FLOAT
_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose"})
_CONVOLUTION = (
    "a convolution: MatMulNBits has no convolution kernel "
    "('int8-static' or 'int4-weight-symmetric' quantize these weights)"
)
# Ops whose meaning changed between opset 20 and 21, which int4 Gather data (opset 21)
# would silently reinterpret.
_CHANGED_AT_21 = frozenset({"GroupNormalization"})


@dataclass(frozen=True)
class _Target:
    """A node to rewrite: the source weight it reads, and whether that is stored (N, K)."""

    node: str
    op: str
    weight: str
    transposed: bool = False


@dataclass(frozen=True)
class Outcome:
    """What int4-matmul did.

    Attributes:
        model: The quantized model.
        errors: Per rewritten weight, its error.
        rewritten: Counts per rewrite (``"MatMul → MatMulNBits"``: 12).
        kept: Per node left in float, why.
    """

    model: onnx.ModelProto
    errors: list[TensorError]
    rewritten: dict[str, int]
    kept: dict[str, str]


def int4_matmul(
    model: onnx.ModelProto,
    source: onnx.ModelProto,
    read: Callable[[onnx.TensorProto], np.ndarray],
    scheme: Int4MatMul,
    exclude: list[str],
) -> Outcome:
    """Quantize ``model`` (the caller's copy of ``source`` with every weight in memory,
    changed in place) with onnxruntime's MatMulNBits. The errors are measured against
    ``source``'s weights, which ``read`` gives one at a time (from its files, for a model
    kept on disk, rather than a second copy in memory).

    Raises:
        ConfigError: The model has no weight this scheme can take.
    """
    kept: dict[str, str] = {}
    targets = _plan(model, scheme, set(exclude), kept)

    if not targets:
        why = "; ".join(f"{node}: {reason}" for node, reason in list(kept.items())[:3])
        raise ConfigError(
            "int4-matmul rewrites the constant weights of MatMul and Gemm nodes (and Gather "
            f"embeddings); this model has none it can take{f' ({why})' if why else ''}. "
            "For convolutions try 'int8-dynamic', 'int4-weight-symmetric' or 'kmeans-16'."
        )
    for target in targets:
        if target.op == "Gemm":
            _gemm_as_matmul(model, target)
    wanted = {t.node for t in targets}
    candidates = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gather")]
    candidates += _inside_subgraphs(model.graph, kept)
    ops = ["MatMul", "Gather"] if any(t.op == "Gather" for t in targets) else ["MatMul"]
    quantized = ort_adapter.matmul_nbits(
        model, scheme, ops=ops, exclude=[n for n in candidates if n not in wanted]
    )
    nodes = {n.name: n for n in quantized.graph.node}
    weights = {t.name: t for t in quantized.graph.initializer}
    originals = {t.name: t for t in source.graph.initializer}
    errors, rewritten = [], Counter[str]()
    for target in targets:
        node = nodes.get(f"{target.node}_Q4")
        if node is None:
            kept[target.node] = "onnxruntime's quantizer left it in float"
            continue
        rewritten[f"{target.op} → {node.op_type}"] += 1
        restored = nbits.restore(node, weights)
        restored = restored.T if target.transposed else restored  # as the source stores it
        weight = read(originals[target.weight]).reshape(restored.shape)
        errors.append(error_of(target.weight, weight, restored))
    return Outcome(quantized, errors, dict(rewritten), kept)


def _plan(
    model: onnx.ModelProto, scheme: Int4MatMul, exclude: set[str], kept: dict[str, str]
) -> list[_Target]:
    """The nodes to rewrite (unnamed ones get a name); why each other candidate is kept."""
    weights = {t.name: t for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    gathers = _gathers_allowed(model, scheme)
    targets: list[_Target] = []
    seen: dict[str, str] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _CONVOLUTIONS and node.input[1] in weights:
            kept[node.name or node.output[0]] = _CONVOLUTION
            continue
        if node.op_type not in ("MatMul", "Gemm", "Gather"):
            continue
        node.name = node.name or f"{node.op_type}_{node.output[0]}"
        index = 0 if node.op_type == "Gather" else 1
        weight = weights.get(node.input[index]) if len(node.input) > index else None
        if node.op_type == "Gather" and (weight is None or len(weight.dims) < 2):
            continue  # an index into a shape, not an embedding table
        reason = _refusal(node, weight, scheme, exclude, inputs, gathers)
        if reason is None and weight is not None and weight.name in seen:
            reason = f"its weight is shared with {seen[weight.name]}, which took it"
        if reason is not None:
            kept[node.name] = reason
            continue
        assert weight is not None
        seen[weight.name] = node.name
        transposed = node.op_type == "Gemm" and _attr(node, "transB", 0) == 1
        targets.append(_Target(node.name, node.op_type, weight.name, transposed))
    return targets


def _inside_subgraphs(graph: onnx.GraphProto, kept: dict[str, str]) -> list[str]:
    """The MatMul and Gather nodes in the bodies of If/Loop/Scan nodes, named if they were
    not: onnxruntime's quantizer would take them too, and their weights (often in an
    outer scope) are out of this scheme's sight, so they stay float."""
    names = []
    for node in graph.node:
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                for inner in body.node:
                    if inner.op_type in ("MatMul", "Gather"):
                        inner.name = inner.name or f"{inner.op_type}_{inner.output[0]}"
                        names.append(inner.name)
                        kept[inner.name] = f"inside the body of {node.op_type} {node.name!r}"
                names += _inside_subgraphs(body, kept)
    return names


def _refusal(
    node: onnx.NodeProto,
    weight: onnx.TensorProto | None,
    scheme: Int4MatMul,
    exclude: set[str],
    inputs: set[str],
    gathers: str | None,
) -> str | None:
    """Why ``node`` stays float, or ``None`` when its weight becomes 4-bit."""
    if node.name in exclude or (weight is not None and weight.name in exclude):
        return "excluded"
    if weight is None:
        return "its weight is computed (an activation such as attention scores), not a constant"
    if weight.name in inputs:
        return "its weight is a graph input (it can be fed at run time)"
    if weight.data_type != _FLOAT:
        return f"its weight is {helper.tensor_dtype_to_np_dtype(weight.data_type)}, not float32"
    dims = list(weight.dims)
    if node.op_type == "Gather":
        if gathers or len(dims) != 2:
            return gathers or f"its table has shape {dims}: only 2-D embedding tables are taken"
        return None if _attr(node, "axis", 0) == 0 else "Gather axis ≠ 0"
    if len(dims) < 2 or any(d != 1 for d in dims[:-2]):
        return f"its weight has shape {dims}: MatMulNBits takes 2-D weights"
    if node.op_type == "Gemm" and (
        _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1 or _attr(node, "beta", 1.0) != 1
    ):
        return "a Gemm with transA, alpha or beta: only plain ones become MatMul"
    k = dims[-1] if node.op_type == "Gemm" and _attr(node, "transB", 0) else dims[-2]
    # onnxruntime pads K up to whole blocks: each holds block/2 bytes and a float scale.
    if -(-k // scheme.block_size) * (scheme.block_size // 2 + 4) >= 4 * k:
        return f"K={k} padded to {scheme.block_size}-value blocks is no smaller in 4 bits"
    return None


def _gathers_allowed(model: onnx.ModelProto, scheme: Int4MatMul) -> str | None:
    """Why embeddings stay float in this model, or ``None`` if they may become 4-bit.
    int4 tensors need opset 21, which onnxruntime's quantizer sets on the model."""
    if not scheme.embeddings:
        return "embeddings=False"
    opset = _onnxio.opset(model)
    if opset < 20:
        return f"4-bit embeddings need opset 21 and this model has {opset}: export with opset 20"
    changed = {n.op_type for n in model.graph.node} & _CHANGED_AT_21
    if opset < 21 and changed:
        return f"opset 21 (for 4-bit embeddings) changes {', '.join(sorted(changed))}"
    return None


def _gemm_as_matmul(model: onnx.ModelProto, target: _Target) -> None:
    """Replace a plain Gemm by MatMul (same name, weight stored (K, N)) and Add for its bias."""
    index = next(i for i, n in enumerate(model.graph.node) if n.name == target.node)
    gemm = model.graph.node[index]
    weight = gemm.input[1]
    if target.transposed:
        tensor = next(t for t in model.graph.initializer if t.name == weight)
        weight = f"{weight}_kn"
        array = numpy_helper.to_array(tensor).T
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), weight))
    out = gemm.output[0]
    bias = gemm.input[2] if len(gemm.input) > 2 and gemm.input[2] else ""
    nodes = [helper.make_node("MatMul", [gemm.input[0], weight], [f"{out}_mm" if bias else out],
                              name=gemm.name)]  # fmt: skip
    if bias:
        nodes.append(helper.make_node("Add", [f"{out}_mm", bias], [out], name=f"{gemm.name}_bias"))
    del model.graph.node[index]
    for offset, node in enumerate(nodes):
        model.graph.node.insert(index + offset, node)


def _attr(node: onnx.NodeProto, name: str, default: float) -> float:
    for attribute in node.attribute:
        if attribute.name == name:
            return float(helper.get_attribute_value(attribute))
    return default
