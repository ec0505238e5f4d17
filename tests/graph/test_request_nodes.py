"""Per-request nodes: what every request runs, apart from what computes constants."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from nbdeploy.examples import computed_weights
from nbdeploy.graph.passes import count_nodes, count_request_nodes


def test_nodes_that_compute_weights_are_not_per_request() -> None:
    model = ir.from_proto(
        onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 2] x) => (float[N, 2] y) {
            shape = Constant <value = int64[2] {2, 2}> ()
            w = ConstantOfShape <value = float[1] {0.5}> (shape)
            h = MatMul (x, w)
            y = Relu (h)
        }""")
    )
    assert (count_nodes(model.graph), count_request_nodes(model.graph)) == (4, 2)


def test_the_generated_architectures_compute_every_weight() -> None:
    model = computed_weights.resnet50(blocks=(1, 1, 1, 1))
    onnx.checker.check_model(model)
    assert not any(init.dims and max(init.dims) > 8 for init in model.graph.initializer)
    graph = ir.from_proto(model).graph
    ops = [n.op_type for n in graph]
    assert count_request_nodes(graph) < len(ops) / 4
    assert ops.count("BatchNormalization") == 1 + 4 * 4  # stem; 3 per block, 1 on the skip


def test_inspect_reports_the_nodes_per_request() -> None:
    import numpy as np

    import nbdeploy as nbd

    model = computed_weights.resnet50(blocks=(1, 1, 1, 1))
    image = np.zeros((1, 3, 64, 64), np.float32)
    summary = nbd.inspect(nbd.export(model, image, name="r", progress=False))
    assert summary.request_nodes == count_request_nodes(ir.from_proto(model).graph)
    assert summary.request_nodes < summary.nodes / 4
    assert f"({summary.request_nodes} per request)" in str(summary)
