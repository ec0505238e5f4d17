"""``nbd.inspect``: what is in a graph, at a glance."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from .. import _html
from ..artifact import Artifact, require_onnx
from ..types import ONNX_TO_NUMPY, TensorSpec
from .passes import count_request_nodes

__all__ = ["GraphSummary", "inspect"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphSummary:
    """A summary of an ONNX graph.

    Attributes:
        name: The artifact's name.
        opset: The default-domain opset.
        nodes: Node count, subgraphs included.
        request_nodes: The nodes each request runs (those that depend on an input); the
            others compute constants, which onnxruntime folds when it loads the model.
        ops: Operator histogram, most frequent first (``"domain::Op"`` outside ONNX).
        parameters: Number of weight values (initializers and constants).
        parameter_bytes: Bytes of weights by dtype.
        inputs: Input specs.
        outputs: Output specs.
        largest: The largest weights as ``(name, dtype, shape, bytes)``.
        macs: Estimated multiply-accumulates per example (batch 1), counting Conv,
            ConvTranspose, MatMul and Gemm whose shapes are known; ``None`` if none were.
        size_bytes: Size of the model file.
    """

    name: str
    opset: int
    nodes: int
    request_nodes: int
    ops: dict[str, int]
    parameters: int
    parameter_bytes: dict[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    largest: tuple[tuple[str, str, tuple[int, ...], int], ...]
    macs: int | None
    size_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name, "opset": self.opset, "nodes": self.nodes,
            "request_nodes": self.request_nodes, "ops": self.ops,
            "parameters": self.parameters, "parameter_bytes": self.parameter_bytes,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "largest": [list(x) for x in self.largest], "macs": self.macs,
            "size_bytes": self.size_bytes,
        }  # fmt: skip

    def __str__(self) -> str:
        ops = ", ".join(f"{op} ×{n}" for op, n in self.ops.items())
        weights = ", ".join(f"{d} {_html.human_bytes(b)}" for d, b in self.parameter_bytes.items())
        macs = f"{self.macs:,}" if self.macs is not None else "unknown"
        return "\n".join([
            f"{self.name}: opset {self.opset}, {self.nodes} nodes ({self.request_nodes} per "
            f"request), {self.parameters:,} parameters "
            f"({weights or 'none'}), {_html.human_bytes(self.size_bytes)}, MACs/example {macs}",
            f"  inputs:  {', '.join(map(str, self.inputs))}",
            f"  outputs: {', '.join(map(str, self.outputs))}",
            f"  ops:     {ops}",
        ])  # fmt: skip

    def _repr_html_(self) -> str:
        ops = _html.table(["op", "count"], self.ops.items())
        largest = _html.table(
            ["weight", "dtype", "shape", "size"],
            [(n, d, "×".join(map(str, s)) or "scalar", _html.human_bytes(b))
             for n, d, s, b in self.largest],
        )  # fmt: skip
        rows = [
            ("opset", self.opset), ("nodes", self.nodes),
            ("nodes per request", self.request_nodes),
            ("parameters", f"{self.parameters:,}"),
            ("weights", ", ".join(f"{d}: {_html.human_bytes(b)}"
                                  for d, b in self.parameter_bytes.items())),
            ("MACs / example", f"{self.macs:,}" if self.macs is not None else "unknown"),
            ("file size", _html.human_bytes(self.size_bytes)),
            ("inputs", _html.code_lines(self.inputs)),
            ("outputs", _html.code_lines(self.outputs)),
        ]  # fmt: skip
        body = (
            '<div style="display:flex;gap:24px;flex-wrap:wrap">'
            f"<div>{_html.fields(rows)}</div><div>{ops}</div><div>{largest}</div></div>"
        )
        return _html.card(f"Graph '{self.name}'", body)


def inspect(art: Artifact, *, top: int = 5, macs: bool = True) -> GraphSummary:
    """Summarize an ONNX artifact's graph: ops, weights, IO, opset, size and MACs.

    Args:
        art: An ONNX artifact.
        top: How many of the largest weights to list.
        macs: Estimate MACs (runs shape inference on a copy of the model).
    """
    payload = require_onnx(art, "inspect")
    model = payload.model
    ops: Counter[str] = Counter()
    for node in _nodes(model.graph):
        ops[
            node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        ] += 1
    weights = list(_weights(model.graph))
    by_dtype: Counter[str] = Counter()
    for _, dtype, _, nbytes in weights:
        by_dtype[dtype] += nbytes
    return GraphSummary(
        name=art.name,
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0),
        nodes=sum(ops.values()),
        request_nodes=count_request_nodes(ir.from_proto(model).graph),
        ops=dict(ops.most_common()),
        parameters=sum(int(np.prod(shape)) for _, _, shape, _ in weights),
        parameter_bytes=dict(by_dtype.most_common()),
        inputs=art.inputs,
        outputs=art.outputs,
        largest=tuple(sorted(weights, key=lambda w: -w[3])[:top]),
        macs=_macs(model) if macs and payload.folder is None else None,
        size_bytes=art.size_bytes,
    )


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _nodes(sub)


def _weights(graph: onnx.GraphProto) -> Iterator[tuple[str, str, tuple[int, ...], int]]:
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(n.output[0], a.t) for n in _nodes(graph) if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]  # fmt: skip
    for name, tensor in tensors:
        dtype = ONNX_TO_NUMPY.get(tensor.data_type, "unknown")
        shape = tuple(int(d) for d in tensor.dims)
        itemsize = np.dtype(dtype).itemsize if dtype not in ("unknown", "object", "bfloat16") else 2
        yield name, dtype, shape, int(np.prod(shape)) * itemsize


def _macs(model: onnx.ModelProto) -> int | None:
    """Multiply-accumulates at batch 1 from inferred shapes (symbolic dims set to 1)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception as err:  # custom ops and such: no estimate rather than a failure
        log.info("no MACs estimate: %s", err)
        return None
    shapes = {v.name: _shape(v) for v in [*inferred.graph.value_info, *inferred.graph.input,
                                          *inferred.graph.output]}  # fmt: skip
    shapes |= {t.name: tuple(int(d) for d in t.dims) for t in inferred.graph.initializer}
    total, known = 0, False
    for node in inferred.graph.node:
        count = _node_macs(node, shapes)
        if count is not None:
            total, known = total + count, True
    return total if known else None


def _shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    dims = value.type.tensor_type.shape.dim
    if not value.type.tensor_type.HasField("shape") or any(
        not d.HasField("dim_value") for d in dims
    ):
        return None
    return tuple(d.dim_value for d in dims)


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm") or node.domain:
        return None
    a, b = (shapes.get(name) for name in node.input[:2])
    out = shapes.get(node.output[0])
    if a is None or b is None or out is None:
        return None
    if node.op_type == "Conv":  # each output element: Cin/group × kernel
        return int(np.prod(out)) * int(np.prod(b[1:]))
    if node.op_type == "ConvTranspose":  # each input element scatters Cout/group × kernel
        return int(np.prod(a)) * int(np.prod(b[1:]))
    if node.op_type == "Gemm":
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        return int(np.prod(out)) * (a[0] if trans_a else a[-1])
    return int(np.prod(out)) * a[-1]  # MatMul: each output element is a K-long dot product
