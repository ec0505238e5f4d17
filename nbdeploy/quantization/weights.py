"""Weight-only schemes implemented by nbdeploy: each weight becomes stored integers (or
cluster indices; 4- and 2-bit ones packed, see :mod:`.packed`) plus a dequantizing
subgraph that onnxruntime folds when the session loads, so the file shrinks and
inference runs on float weights as before."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .._progress import detail
from . import maths
from .packed import needs_packing, packed, upgrade
from .schemes import KMeans, WeightOnly
from .store import Store

MIN_ELEMENTS = 64  # smaller tensors (biases, norms) are not worth a dequantize node

# op type -> (input index of its weight, the output-channel axis of that weight)
_WEIGHT_INPUTS: dict[str, Callable[[onnx.NodeProto], tuple[int, int]]] = {
    "Conv": lambda node: (1, 0),
    "ConvTranspose": lambda node: (1, 1),
    "MatMul": lambda node: (1, 1),
    "Gemm": lambda node: (1, 0 if _attr(node, "transB", 0) else 1),
    "Gather": lambda node: (0, 0),  # embeddings
}


@dataclass(frozen=True)
class TensorError:
    """How much one quantized weight changed.

    Attributes:
        name: The weight.
        elements: Its number of values.
        max_abs: Largest absolute error.
        rmse: Root mean square error.
        snr_db: Signal-to-noise ratio in dB (higher is better).
    """

    name: str
    elements: int
    max_abs: float
    rmse: float
    snr_db: float


def error_of(name: str, original: np.ndarray, restored: np.ndarray) -> TensorError:
    """The error of a restored tensor against its original.

    Sums of squares are float32 dot products (BLAS, no float64 copies of the tensor: a
    whole-tensor float64 pass took a third of an fp16 conversion of 1 GB of weights);
    their relative error is ~1e-4, a thousandth of a dB of SNR."""
    flat = original.astype(np.float32, copy=False).ravel()
    diff = restored.astype(np.float32, copy=False).ravel() - flat
    count = max(flat.size, 1)
    noise, signal = float(np.dot(diff, diff)) / count, float(np.dot(flat, flat)) / count
    snr = 10 * np.log10(signal / noise) if noise > 0 and signal > 0 else float("inf")
    max_abs = float(np.abs(diff).max()) if diff.size else 0.0
    return TensorError(name, int(original.size), max_abs, noise**0.5, float(snr))


def quantize_weights(
    model: onnx.ModelProto,
    scheme: WeightOnly | KMeans,
    store: Store,
    *,
    per_channel: bool,
    exclude: Iterable[str] = (),
) -> list[TensorError]:
    """Replace eligible float32 weights of ``model`` in place, one at a time, reading
    them from and writing their replacements to ``store``; return their errors."""
    skip = set(exclude)
    if needs_packing(scheme):
        upgrade(model, scheme)
    targets = weight_tensors(model, skip)
    kept = [init for init in model.graph.initializer if init.name not in targets]
    errors: list[TensorError] = []
    new_nodes: list[onnx.NodeProto] = []
    stored: list[onnx.TensorProto] = []
    for init in model.graph.initializer:
        if init.name not in targets:
            continue
        detail(f"weight {len(errors) + 1} of {len(targets)}")
        weight = store.read(init)
        axis = targets[init.name] if per_channel or _blocks(scheme) else None
        arrays, nodes, restored = _encode(init.name, weight, scheme, axis)
        stored += [store.put(array, name) for name, array in arrays]
        new_nodes += nodes
        errors.append(error_of(init.name, weight, restored))
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *stored])
    # Dequantizing nodes depend only on initializers: put them first, keeping topological order.
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*new_nodes, *existing])
    return errors


def weight_tensors(model: onnx.ModelProto, skip: set[str]) -> dict[str, int]:
    """Float32 initializers used as weights, with their output-channel axis."""
    inits = {i.name: i for i in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    found: dict[str, int] = {}
    for node in model.graph.node:
        rule = _WEIGHT_INPUTS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rule is None or node.name in skip:
            continue
        index, axis = rule(node)
        name = node.input[index] if len(node.input) > index else ""
        init = inits.get(name)
        if (
            init is None
            or name in skip
            or name in graph_inputs
            or init.data_type != onnx.TensorProto.FLOAT
        ):
            continue
        if int(np.prod(init.dims)) >= MIN_ELEMENTS and len(init.dims) >= 2:
            found.setdefault(name, axis)
    return found


def _encode(
    name: str, weight: np.ndarray, scheme: WeightOnly | KMeans, axis: int | None
) -> tuple[list[tuple[str, np.ndarray]], list[onnx.NodeProto], np.ndarray]:
    """The arrays that store ``weight`` (by name), the nodes that restore it, and the
    restored values."""
    if isinstance(scheme, KMeans):
        return _clustered(name, weight, scheme.k)
    if scheme.block_size is not None and axis is not None:
        return _blocked(name, weight, scheme, axis)
    quantize = maths.symmetric if scheme.symmetric else maths.asymmetric
    affine = quantize(weight, bits=scheme.bits, axis=axis)
    nodes = [_dequantize(name, affine, name)]
    return _affine_arrays(name, affine, scheme), nodes, affine.dequantize()


def _clustered(
    name: str, weight: np.ndarray, k: int
) -> tuple[list[tuple[str, np.ndarray]], list[onnx.NodeProto], np.ndarray]:
    clustered = maths.kmeans(weight, k=k)
    indices = packed(clustered.indices, signed=False, bits=(k - 1).bit_length())
    stored = [
        (f"{name}_kmeans_indices", indices),
        (f"{name}_kmeans_codebook", clustered.codebook),
    ]
    # Gather takes int32 or int64 indices. int32: onnxruntime keeps every folded
    # intermediate until the session is built, and int64 ones peaked at 3.1x the
    # float model's size while it loaded (int32: 2.1x). Cast from UINT4/UINT2 folds as well.
    nodes = [
        helper.make_node("Cast", [f"{name}_kmeans_indices"], [f"{name}_kmeans_idx32"],
                         to=onnx.TensorProto.INT32, name=f"{name}_kmeans_cast"),
        helper.make_node("Gather", [f"{name}_kmeans_codebook", f"{name}_kmeans_idx32"], [name],
                         axis=0, name=f"{name}_kmeans_gather"),
    ]  # fmt: skip
    return stored, nodes, clustered.dequantize()


def _blocked(
    name: str, weight: np.ndarray, scheme: WeightOnly, axis: int
) -> tuple[list[tuple[str, np.ndarray]], list[onnx.NodeProto], np.ndarray]:
    """Blocks run along each output channel's input values. A matrix is stored as it is
    (blocked DequantizeLinear on its input axis); a convolution's kernel as a matrix
    [output channels, inputs], reshaped (and transposed) back by nodes onnxruntime folds
    with the DequantizeLinear at load."""
    quantize = maths.symmetric if scheme.symmetric else maths.asymmetric
    if weight.ndim == 2:
        affine = quantize(weight, bits=scheme.bits, axis=1 - axis, block_size=scheme.block_size)
        nodes = [_dequantize(name, affine, name)]
        return _affine_arrays(name, affine, scheme), nodes, affine.dequantize()
    moved = np.moveaxis(weight, axis, 0)
    matrix = moved.reshape(moved.shape[0], -1)
    affine = quantize(matrix, bits=scheme.bits, axis=1, block_size=scheme.block_size)
    stored = [*_affine_arrays(name, affine, scheme),
              (f"{name}_shape", np.asarray(moved.shape, np.int64))]  # fmt: skip
    reshaped = name if axis == 0 else f"{name}_moved"
    nodes = [
        _dequantize(name, affine, f"{name}_blocks"),
        helper.make_node("Reshape", [f"{name}_blocks", f"{name}_shape"], [reshaped],
                         name=f"{name}_reshape"),
    ]  # fmt: skip
    if axis != 0:
        perm = [*range(1, axis + 1), 0, *range(axis + 1, weight.ndim)]
        nodes.append(helper.make_node("Transpose", [reshaped], [name], perm=perm,
                                      name=f"{name}_transpose"))  # fmt: skip
    restored = np.moveaxis(affine.dequantize().reshape(moved.shape), 0, axis)
    return stored, nodes, restored


def _affine_arrays(
    name: str, affine: maths.Affine, scheme: WeightOnly
) -> list[tuple[str, np.ndarray]]:
    signed, bits = scheme.symmetric, scheme.bits
    return [
        (f"{name}_q", packed(affine.q, signed=signed, bits=bits)),
        (f"{name}_scale", np.asarray(affine.scale, np.float32)),
        (f"{name}_zero_point", packed(affine.zero_point, signed=signed, bits=bits)),
    ]


def _dequantize(name: str, affine: maths.Affine, output: str) -> onnx.NodeProto:
    node = helper.make_node(
        "DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero_point"], [output],
        name=f"{name}_dequantize",
    )  # fmt: skip
    if affine.axis is not None:
        node.attribute.append(helper.make_attribute("axis", affine.axis))
    if affine.block_size is not None:
        node.attribute.append(helper.make_attribute("block_size", affine.block_size))
    return node


def _blocks(scheme: WeightOnly | KMeans) -> bool:
    """Blocks run along an output channel: block-wise schemes need its axis."""
    return isinstance(scheme, WeightOnly) and scheme.block_size is not None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)
