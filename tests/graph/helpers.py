"""Build tiny ONNX models from text and check a pass against onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx.parser

import nbdeploy as nbd


def model(text: str, **weights: np.ndarray) -> nbd.Artifact:
    """An artifact from ONNX text, with named initializers given as arrays."""
    proto = onnx.parser.parse_model(text)
    for name, value in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    onnx.checker.check_model(proto)
    return nbd.export(proto, name=proto.graph.name or "m")


def classifier() -> nbd.Artifact:
    """A seeded two-layer classifier, 20 features to 10 scores (MatMul → Relu → MatMul)."""
    rng = np.random.default_rng(0)
    return model(
        """<ir_version: 8, opset_import: ["" : 17]>
        clf (float[N, 20] x) => (float[N, 10] scores) {
            h = MatMul (x, w1)
            r = Relu (h)
            scores = MatMul (r, w2)
        }""",
        w1=rng.standard_normal((20, 64)).astype(np.float32),
        w2=rng.standard_normal((64, 10)).astype(np.float32),
    )


def ops(art: nbd.Artifact) -> list[str]:
    """Op types of the main graph, in order."""
    return [n.op_type for n in art.onnx.graph.node]


def assert_same_outputs(
    a: nbd.Artifact, b: nbd.Artifact, feed: Mapping[str, np.ndarray], *, atol: float = 1e-5
) -> None:
    """Both artifacts give the same outputs on ``feed`` (strict tolerances by default)."""
    want, got = a.run(dict(feed)), b.run(dict(feed))
    assert list(got) == list(want)
    for name in want:
        if want[name].dtype.kind in "fc":
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
