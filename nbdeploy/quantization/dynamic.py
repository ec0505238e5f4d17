"""int8 dynamic quantization one weight at a time, for models kept on disk.

onnxruntime's ``quantize_dynamic`` holds about six copies of a model's weights at its
peak (``benchmarks/results/scale.md``), more than a 24 GiB machine has for a
1B-parameter model. This rewrite reads each weight from the model's files, quantizes it
and writes it out before reading the next, into the graph onnxruntime's quantizer emits
for the same model — ``DynamicQuantizeLinear`` on the activation, ``MatMulInteger``,
and the two scales multiplied back — which onnxruntime fuses into one
``MatMulIntegerToFloat`` kernel when the session loads. It covers the weights that make
a large model large: ``MatMul`` and ``Gemm`` (symmetric, in the reduced int8 range
below; per output channel or per tensor, as onnxruntime does) and ``Gather`` embeddings
(per tensor, dequantized after the lookup). Models held in memory still go through
onnxruntime's quantizer, which also takes convolutions and recurrent layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .. import _onnxio
from .._progress import detail
from ..errors import ConfigError
from . import maths
from .packed import packed, raise_opset
from .store import Store
from .weights import TensorError, error_of

__all__ = ["REDUCED_QMAX", "int8_dynamic"]

# Weights of MatMulInteger in [−64, 64], onnxruntime's reduce_range: on x86 CPUs without
# VNNI (AVX2, AVX-512 before Cascade Lake) its u8×s8 kernel adds pairs of products in 16
# bits (vpmaddubsw), which saturate for weights past 64 (2·255·127 > 32767). Measured
# here on an AVX2 CPU: SQNR 22.7 dB after one MatMul at the full range. A model may be
# served on any CPU, so the range is always reduced; embeddings (Gather) are not.
REDUCED_QMAX = 64

_FLOAT = onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class _Use:
    """A node whose weight this rewrite quantizes: which input, and how it is read."""

    node: onnx.NodeProto
    weight: str
    transposed: bool  # Gemm with transB=1: the stored weight is (N, K)


def int8_dynamic(
    model: onnx.ModelProto,
    store: Store,
    *,
    per_channel: bool,
    exclude: Iterable[str] = (),
    bits: int = 8,
) -> list[TensorError]:
    """Quantize ``model``'s MatMul, Gemm and Gather weights in place, reading them from
    and writing them to ``store`` one at a time; return their errors. With ``bits=4``
    (``int4-dynamic``), MatMul and Gemm weights are stored as packed INT4 behind a
    ``Cast`` to int8 that onnxruntime folds at load (the model is raised to opset 21).

    Raises:
        ConfigError: The model's opset is older than 11 (no ``DynamicQuantizeLinear``),
            or cannot be raised to 21 for 4-bit weights.
    """
    name = f"int{bits}-dynamic"
    if _onnxio.opset(model) < 11:
        raise ConfigError(f"{name} needs opset ≥ 11 (DynamicQuantizeLinear): export with opset=17.")
    if bits == 4:
        raise_opset(model, 4, name)
    skip = {*exclude, *(value.name for value in model.graph.input)}  # inputs can be fed
    weights = {t.name: t for t in model.graph.initializer}
    uses = [use for node in model.graph.node if (use := _use(node, weights, skip))]
    quantized = _quantize_weights(uses, weights, store, per_channel, bits)
    by_node = {id(use.node): use for use in uses if use.weight in quantized}
    # A 4-bit weight's Cast to int8 comes first: onnxruntime folds it at load.
    nodes: list[onnx.NodeProto] = [
        helper.make_node("Cast", [_names(w).packed], [_names(w).quantized],
                         to=onnx.TensorProto.INT8, name=f"{w}_to_int8")
        for w, (tensors, _) in quantized.items()
        if any(t.name == _names(w).packed for t in tensors)
    ]  # fmt: skip
    activations: set[str] = set()
    for node in model.graph.node:
        use = by_node.get(id(node))
        if use is None:
            nodes.append(node)
        elif node.op_type == "Gather":
            nodes += _gather(use)
        else:
            nodes += _matmul(use, activations)
    # A quantized weight stays in float too when another node still reads it (a tied
    # embedding read again through a Transpose).
    read = {name for node in nodes for name in _onnxio.reads(node)}
    kept = [t for t in model.graph.initializer if t.name not in quantized or t.name in read]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *(t for q in quantized.values() for t in q[0])])
    return [q[1] for q in quantized.values()]


def _use(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto], skip: set[str]) -> _Use | None:
    """The weight of ``node`` this rewrite takes, if it takes one."""
    if node.domain not in ("", "ai.onnx") or node.name in skip:
        return None
    index = {"MatMul": 1, "Gemm": 1, "Gather": 0}.get(node.op_type)
    if index is None or len(node.input) <= index:
        return None
    tensor = weights.get(node.input[index])
    if tensor is None or tensor.name in skip or tensor.data_type != _FLOAT or len(tensor.dims) != 2:
        return None
    if node.op_type == "Gemm":
        plain = _attr(node, "transA", 0) == 0 and _attr(node, "alpha", 1.0) == 1.0
        if not plain or _attr(node, "beta", 1.0) != 1.0:
            return None
        return _Use(node, tensor.name, transposed=_attr(node, "transB", 0) == 1)
    if node.op_type == "Gather" and _attr(node, "axis", 0) != 0:
        return None
    return _Use(node, tensor.name, transposed=False)


def _quantize_weights(
    uses: list[_Use],
    weights: dict[str, onnx.TensorProto],
    store: Store,
    per_channel: bool,
    bits: int,
) -> dict[str, tuple[list[onnx.TensorProto], TensorError]]:
    """Each used weight quantized once, in file order: its tensors and its error. A
    ``bits=4`` MatMul/Gemm weight is written packed, under :attr:`_Names.packed`."""
    done: dict[str, tuple[list[onnx.TensorProto], TensorError]] = {}
    count = len({use.weight for use in uses})
    for use in uses:
        if use.weight in done:
            continue
        detail(f"weight {len(done) + 1} of {count}")
        conflicting = [u for u in uses if u.weight == use.weight and u != use]
        if any(u.transposed != use.transposed or u.node.op_type != use.node.op_type
               for u in conflicting):  # fmt: skip
            continue  # read two ways (e.g. tied embedding and head): left in float
        weight = store.read(weights[use.weight])
        matrix = weight.T if use.transposed else weight
        gather = use.node.op_type == "Gather"
        axis = 1 if per_channel and not gather else None
        four = bits == 4 and not gather
        qmax = None if gather or four else REDUCED_QMAX  # 4-bit values never saturate
        affine = maths.symmetric(matrix, bits=4 if four else 8, axis=axis, qmax=qmax)
        names = _names(use.weight)
        values = np.ascontiguousarray(affine.q)
        tensors = [
            store.put(packed(values, signed=True, bits=4), names.packed)
            if four
            else store.put(values, names.quantized),
            store.put(np.asarray(affine.scale, np.float32), names.scale),
            store.put(affine.zero_point, names.zero_point),
        ]
        done[use.weight] = (tensors, error_of(use.weight, matrix, affine.dequantize()))
    return done


@dataclass(frozen=True)
class _Names:
    quantized: str  # the int8 weight MatMulInteger and Gather read
    scale: str
    zero_point: str
    packed: str  # a 4-bit weight as stored, cast to ``quantized`` at load


def _names(weight: str) -> _Names:
    return _Names(f"{weight}_quantized", f"{weight}_scale", f"{weight}_zero_point",
                  f"{weight}_int4")  # fmt: skip


def _matmul(use: _Use, activations: set[str]) -> list[onnx.NodeProto]:
    """onnxruntime's dynamic MatMul: quantize the activation (once per activation),
    integer product, then scale back; a Gemm's bias is added after."""
    node, w = use.node, _names(use.weight)
    x = node.input[0]
    nodes = []
    if x not in activations:
        activations.add(x)
        nodes.append(helper.make_node(
            "DynamicQuantizeLinear", [x], [f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"],
            name=f"{x}_quantize",
        ))  # fmt: skip
    base = node.name or node.output[0]
    out = node.output[0]
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else ""
    product = f"{out}_MatMul" if bias else out
    nodes += [
        helper.make_node("Mul", [f"{x}_scale", w.scale], [f"{base}_scales"],
                         name=f"{base}_scales_mul"),
        helper.make_node("MatMulInteger",
                         [f"{x}_quantized", w.quantized, f"{x}_zero_point", w.zero_point],
                         [f"{out}_integer"], name=f"{base}_quant"),
        helper.make_node("Cast", [f"{out}_integer"], [f"{out}_integer_float"], to=_FLOAT,
                         name=f"{base}_cast"),
        helper.make_node("Mul", [f"{out}_integer_float", f"{base}_scales"], [product],
                         name=f"{base}_output_scale_mul"),
    ]  # fmt: skip
    if bias:
        nodes.append(helper.make_node("Add", [product, bias], [out], name=f"{base}_bias"))
    return nodes


def _gather(use: _Use) -> list[onnx.NodeProto]:
    """An embedding lookup in int8, dequantized after the lookup (per tensor)."""
    node, w = use.node, _names(use.weight)
    out = node.output[0]
    return [
        helper.make_node("Gather", [w.quantized, node.input[1]], [f"{out}_int8"],
                         axis=0, name=node.name or f"{out}_gather"),
        helper.make_node("DequantizeLinear", [f"{out}_int8", w.scale, w.zero_point], [out],
                         name=f"{node.name or out}_dequantize"),
    ]  # fmt: skip


def _attr(node: onnx.NodeProto, name: str, default: float) -> float:
    for attribute in node.attribute:
        if attribute.name == name:
            return float(helper.get_attribute_value(attribute))
    return default
