"""Shapes proven with symbolic arithmetic, so rules can replace shape subgraphs.

onnx's shape inference gives up on arithmetic over dimensions: the ``Shape → Slice → Mul
→ Concat → Reshape`` chain an exporter writes after a GRU leaves a Reshape whose output is
``[12, batch, unk__0]``. onnxruntime's symbolic shape inference (``onnxruntime.tools.
symbolic_shape_infer``, sympy underneath) computes ``[12, batch, 16]``; with that, the
Reshape's target can be written as a constant and the chain dies.

Weights never travel: initializers past a few kB are handed to the inference as graph
inputs of their shape and type, so a model's memory is not copied for this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir

log = logging.getLogger(__name__)
_INLINE_ELEMENTS = 1024  # initializers this small go in whole: shapes may be computed from them
UNKNOWN_PREFIX = "unk__"  # both onnx and onnxruntime name dims they could not prove so


def is_named(name: str | None) -> bool:
    """A dim name some inference gave for a reason (not blank, not ``unk__…``)."""
    return bool(name) and not str(name).startswith(UNKNOWN_PREFIX)


@dataclasses.dataclass(frozen=True)
class ShapeFacts:
    """What the symbolic inference proved: each value's dims (int, a symbol's name, or
    None), and the values of integer tensors it computed to plain numbers (a ``Slice`` of
    a ``Shape`` over static dims, ``768 / 12``)."""

    dims: dict[str, list[int | str | None]]
    numbers: dict[str, int | list[int]]


def prove(model: ir.Model) -> ShapeFacts | None:
    """Run onnxruntime's symbolic shape inference on ``model`` (not changed); ``None``
    when the inference cannot handle it (custom ops, unsupported constructs)."""
    with _weights_by_reference(model):
        proto = ir.to_proto(model)
    _weights_as_inputs(proto.graph)
    try:
        return _infer(proto)
    except Exception as err:  # nothing proven, nothing lost
        log.info("symbolic shape inference skipped: %s: %s", type(err).__name__, err)
        return None


def refine_shapes(graph: ir.Graph, facts: ShapeFacts) -> int:
    """Write the proven dims onto the values of ``graph`` where they are more precise than
    what is there; how many values changed."""
    refined = 0
    for node in graph:
        for value in node.outputs:
            dims = facts.dims.get(value.name or "")
            merged = None if dims is None else _merge(value.shape, dims)
            if merged is not None:
                value.shape = merged
                refined += 1
    return refined


def replace_proven_numbers(graph: ir.Graph, facts: ShapeFacts) -> int:
    """Replace the integer values computed from shapes that the inference proved to be
    numbers by constants (the nodes that computed them die); how many were replaced."""
    replaced = 0
    taken = set(graph.initializers) | {v.name for n in graph for v in n.outputs}
    for node in list(graph):
        for value in node.outputs:
            tensor = _as_tensor(value, facts.numbers.get(value.name or ""))
            if tensor is None or value.is_graph_output() or not value.uses():
                continue
            constant = ir.Value(name=_unused_name(taken, f"{value.name}_proven"))
            constant.const_value = tensor
            constant.shape, constant.dtype = ir.Shape(tensor.shape.numpy()), tensor.dtype
            graph.register_initializer(constant)
            value.replace_all_uses_with(constant)
            replaced += 1
    return replaced


def _as_tensor(value: ir.Value, number: int | list[int] | None) -> ir.TensorProtocol | None:
    """``number`` as a tensor of ``value``'s type and shape, if those fit."""
    if number is None or value.dtype not in _INTEGER_TYPES or value.producer() is None:
        return None
    array = np.asarray(number, dtype=value.dtype.numpy())
    if value.shape is not None and list(value.shape) != list(array.shape):
        return None
    return ir.tensor(array)


_INTEGER_TYPES = (ir.DataType.INT64, ir.DataType.INT32)


def _unused_name(taken: set[str | None], name: str) -> str:
    """``name``, or ``name_1``, ``name_2`` … whichever is free; it is then taken."""
    candidate, counter = name, 0
    while candidate in taken:
        counter += 1
        candidate = f"{name}_{counter}"
    taken.add(candidate)
    return candidate


def _infer(proto: onnx.ModelProto) -> ShapeFacts | None:
    """onnxruntime's ``SymbolicShapeInference.infer_shapes``, driven step by step so that
    it writes no file when it gives up (the public call saves the model to the working
    directory then), and with its merges checked.

    Merging is on: ``Min(512, sequence)`` broadcast against ``sequence`` must be one dim
    for BERT's position embeddings to add up, and a broadcast between two symbols only
    works when they are equal (or 1, which keeps the other). A merge of a symbol into a
    number would assert the input's size, so such an inference is not used."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, is_literal

    inference = SymbolicShapeInference(2**31 - 1, True, False, 0)
    inference._preprocess(proto)
    complete = False
    while inference.run_:
        complete = inference._infer_impl()
    inference._update_output_from_vi()
    if not complete or any(is_literal(dim) for dim in inference.suggested_merge_.values()):
        return None
    return ShapeFacts(_dims(inference.out_mp_.graph), _numbers(inference.sympy_data_))


@contextlib.contextmanager
def _weights_by_reference(model: ir.Model) -> Iterator[None]:
    """For the duration, large initializers are swapped for external references of the
    same shape and type (they serialize without their bytes), and small ones read from a
    file are swapped for in-memory copies (shapes may be computed from them)."""
    swapped: dict[ir.Value, ir.TensorProtocol] = {}
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None:
            continue
        if tensor.size > _INLINE_ELEMENTS:
            swapped[value] = tensor
            value.const_value = ir.ExternalTensor(
                "nbdeploy-shapes-only", 0, tensor.nbytes, tensor.dtype,
                shape=ir.Shape(tensor.shape.numpy()), name=value.name or "",
            )  # fmt: skip
        elif isinstance(tensor, ir.ExternalTensor):
            swapped[value] = tensor
            value.const_value = ir.tensor(tensor.numpy(), name=value.name)
    try:
        yield
    finally:
        for value, tensor in swapped.items():
            value.const_value = tensor


def _weights_as_inputs(graph: onnx.GraphProto) -> None:
    """The referenced weights become graph inputs of their shape and type: the inference
    reads the values of constants it does arithmetic on, and a weight's values never
    decide a shape. An initializer that is also a graph input is only a default a request
    may override: it stays an input, without a value the inference could take as fixed."""
    inputs = {info.name for info in graph.input}
    kept = []
    for tensor in graph.initializer:
        if tensor.name in inputs:
            continue
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
            )
        else:
            kept.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _dims(graph: onnx.GraphProto) -> dict[str, list[int | str | None]]:
    found: dict[str, list[int | str | None]] = {}
    for info in [*graph.value_info, *graph.output]:
        if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
            continue
        found[info.name] = [
            dim.dim_value if dim.HasField("dim_value")
            else dim.dim_param or None
            for dim in info.type.tensor_type.shape.dim
        ]  # fmt: skip
    return found


def _numbers(data: dict[str, object]) -> dict[str, int | list[int]]:
    """The computed values that are plain integers (sympy's ``Integer`` included)."""
    import sympy  # onnxruntime's dependency; imported here, as it is slow to import

    found: dict[str, int | list[int]] = {}
    for name, value in data.items():
        items = value if isinstance(value, list) else [value]
        ints = [
            int(item) for item in items
            if isinstance(item, int | sympy.Integer) and not isinstance(item, bool)
        ]  # fmt: skip
        if len(ints) == len(items):
            found[name] = ints if isinstance(value, list) else ints[0]
    return found


def _merge(known: ir.Shape | None, proven: list[int | str | None]) -> ir.Shape | None:
    """``known`` with its unknown dims taken from ``proven``; None when nothing improves."""
    if known is not None and len(known) != len(proven):
        return None  # the two disagree on the rank: trust neither
    old: list[int | ir.SymbolicDim | None] = (
        [None] * len(proven) if known is None else list(known.dims)
    )
    new = [_better(dim, other) for dim, other in zip(old, proven, strict=True)]
    if known is not None and all(_same(a, b) for a, b in zip(new, old, strict=True)):
        return None
    return ir.Shape(new)


def _better(dim: int | ir.SymbolicDim | None, proven: int | str | None) -> int | str | None:
    """A known int wins, then a named dim (the model's own name first), then unknown."""
    if isinstance(dim, int):
        return dim
    if isinstance(proven, int):
        return proven
    current = None if dim is None else dim.value
    for name in (current, proven):
        if is_named(name):
            return name
    return current


def _same(a: int | str | None, b: int | ir.SymbolicDim | None) -> bool:
    return a == (b.value if isinstance(b, ir.SymbolicDim) else b)
