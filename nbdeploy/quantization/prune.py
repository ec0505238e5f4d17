"""``nbd.prune``: magnitude pruning, unstructured or by whole channels.

Unstructured pruning zeroes the smallest-magnitude fraction of each weight: the file
compresses better and sparse kernels can use it, but dense CPU kernels run no faster.
Structured pruning removes whole output channels (lowest L1 norm) of a Conv, Gemm or
MatMul and the matching input channels of the next such layer, where only
channel-preserving ops (activations, pooling) lie between them; the tensors really
shrink, which is what makes a CPU faster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from .. import _html
from ..artifact import Artifact, require_onnx
from ..errors import ConfigError
from .store import Store, rewrite
from .weights import weight_tensors

# Ops between two layers that keep the channel axis as it is.
_CHANNEL_PRESERVING = frozenset({
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Selu",
    "Gelu", "MaxPool", "AveragePool",
})  # fmt: skip


@dataclass(frozen=True)
class PruneReport:
    """What pruning removed.

    Attributes:
        structured: Whole channels (True) or single weights.
        target: The sparsity asked for.
        sparsity: Per weight, the fraction of its values now zero (unstructured) or of
            its output channels removed (structured).
        parameters_before: Weight values before.
        parameters_after: Non-zero weight values after.
    """

    structured: bool
    target: float
    sparsity: dict[str, float]
    parameters_before: int
    parameters_after: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self) | {"overall": self.overall}

    @property
    def overall(self) -> float:
        """Fraction of weight values removed or zeroed."""
        return 1 - self.parameters_after / self.parameters_before if self.parameters_before else 0.0

    def __str__(self) -> str:
        kind = "channels" if self.structured else "weights"
        return (
            f"pruned {kind}: target {self.target:.0%}, reached {self.overall:.1%} of "
            f"{self.parameters_before:,} values over {len(self.sparsity)} tensors"
        )

    def _repr_html_(self) -> str:
        rows = [(name, f"{value:.1%}") for name, value in self.sparsity.items()]
        return _html.card(str(self), _html.table(["tensor", "pruned"], rows))


def prune(art: Artifact, sparsity: float, *, structured: bool = False) -> Artifact:
    """Prune an ONNX artifact's weights by magnitude; see the module docstring.

    Args:
        art: The artifact (unchanged).
        sparsity: Fraction to remove, in [0, 1).
        structured: Remove whole output channels (and the next layer's inputs) instead of
            zeroing single weights.

    Raises:
        ConfigError: A sparsity outside [0, 1), or a non-ONNX artifact.
    """
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}.")
    payload = require_onnx(art, "prune")

    def change(model: onnx.ModelProto, store: Store) -> tuple[dict[str, float], int, int]:
        before = _count(model, store, nonzero=False)
        pruned = (
            _channels(model, store, sparsity) if structured else _magnitude(model, store, sparsity)
        )
        if structured:
            del model.graph.value_info[:]  # channel counts changed; re-inferred on load
        return pruned, before, _count(model, store, nonzero=True)

    # The artifact's own model stays as it was; one kept on disk is read a weight at a time.
    model, (pruned, before, after) = rewrite(payload, change)
    detail = {"sparsity": sparsity, "structured": structured}
    derived = art.derive(model, step="prune", detail=detail)
    parity = derived.parity_against(art, reference="the unpruned input", atol=0.05, rtol=0.05)
    report = PruneReport(structured, sparsity, pruned, before, after)
    return dataclasses.replace(derived, parity=parity, report=report)


def _count(model: onnx.ModelProto, store: Store, *, nonzero: bool) -> int:
    total = 0
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 2:
            values = store.read(init)
            total += int(np.count_nonzero(values)) if nonzero else int(values.size)
    return total


def _magnitude(model: onnx.ModelProto, store: Store, sparsity: float) -> dict[str, float]:
    inits = {i.name: i for i in model.graph.initializer}
    reached = {}
    for name in weight_tensors(model, set()):
        weight = np.array(store.read(inits[name]))  # a copy of its own, to change
        cut = int(sparsity * weight.size)
        if cut:
            order = np.argsort(np.abs(weight), axis=None)[:cut]
            weight.reshape(-1)[order] = 0.0
        inits[name].CopyFrom(store.put(weight, name))
        reached[name] = float(np.mean(weight == 0))
    return reached


def _channels(model: onnx.ModelProto, store: Store, sparsity: float) -> dict[str, float]:
    """Remove output channels of each layer followed (through channel-preserving ops only)
    by another layer; returns the fraction removed per producing weight."""
    inits = {i.name: i for i in model.graph.initializer}

    def replace(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(store.put(np.ascontiguousarray(value), name))

    reached = {}
    for first, second in _layer_pairs(model, inits):
        w1 = store.read(inits[first.input[1]])
        axis1 = _out_axis(first)
        channels = w1.shape[axis1]
        keep_n = max(1, channels - int(sparsity * channels))
        norms = np.abs(np.moveaxis(w1, axis1, 0)).reshape(channels, -1).sum(axis=1)
        keep = np.sort(np.argsort(-norms)[:keep_n])
        replace(first.input[1], np.take(w1, keep, axis=axis1))
        if len(first.input) > 2 and first.input[2] in inits:
            replace(first.input[2], store.read(inits[first.input[2]])[keep])
        w2 = store.read(inits[second.input[1]])
        replace(second.input[1], np.take(w2, keep, axis=_in_axis(second)))
        reached[first.input[1]] = 1 - keep_n / channels
    return reached


def _layer_pairs(model: onnx.ModelProto, inits: dict[str, Any]) -> list[tuple[Any, Any]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    pairs = []
    for node in model.graph.node:
        if not _prunable(node, inits):
            continue
        value = node.output[0]
        while value not in outputs and len(consumers.get(value, [])) == 1:
            nxt = consumers[value][0]
            if nxt.op_type in _CHANNEL_PRESERVING and nxt.domain in ("", "ai.onnx"):
                value = nxt.output[0]
                continue
            if _prunable(nxt, inits) and nxt.input[0] == value and nxt.op_type == node.op_type:
                pairs.append((node, nxt))
            break
    return pairs


def _prunable(node: onnx.NodeProto, inits: dict[str, Any]) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type not in ("Conv", "Gemm", "MatMul"):
        return False
    if len(node.input) < 2 or node.input[1] not in inits:
        return False
    attrs = {a.name: a.i for a in node.attribute}
    if node.op_type == "Conv" and attrs.get("group", 1) != 1:
        return False
    return not (node.op_type == "Gemm" and attrs.get("transA", 0))


def _out_axis(node: onnx.NodeProto) -> int:
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return {"Conv": 0, "MatMul": 1, "Gemm": 0 if trans_b else 1}[node.op_type]


def _in_axis(node: onnx.NodeProto) -> int:
    return 1 - _out_axis(node) if node.op_type != "Conv" else 1
