from __future__ import annotations

import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy import examples
from tests.graph.helpers import model


def test_unstructured_pruning_reaches_the_sparsity_per_tensor(digits_cnn, digits) -> None:  # type: ignore[no-untyped-def]
    pruned = nbd.prune(digits_cnn, 0.3)
    report = pruned.report
    assert report.sparsity and all(abs(s - 0.3) < 0.01 for s in report.sparsity.values())
    assert 0.28 < report.overall < 0.32
    scores = pruned.run(examples.Digits.images(digits.x_val))["output"]
    print("accuracy after pruning 30%:", np.mean(scores.argmax(1) == digits.y_val))
    assert np.mean(scores.argmax(1) == digits.y_val) > 0.9  # no fine-tuning: 30% is near the edge
    assert pruned.lineage.steps[-1].kind == "prune" and "reached" in str(report)


def test_structured_pruning_removes_channels_and_rewires_the_next_layer() -> None:
    rng = np.random.default_rng(0)
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        chain (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {
            a = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
            r = Relu (a)
            p = MaxPool <kernel_shape = [1, 1]> (r)
            y = Conv <pads = [1, 1, 1, 1]> (p, w2, b2)
        }""",
        w1=rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
        b1=rng.standard_normal(16).astype(np.float32),
        w2=rng.standard_normal((4, 16, 3, 3)).astype(np.float32),
        b2=rng.standard_normal(4).astype(np.float32),
    )
    pruned = nbd.prune(art, 0.25, structured=True)
    shapes = {i.name: tuple(i.dims) for i in pruned.onnx.graph.initializer}
    assert shapes["w1"] == (12, 3, 3, 3) and shapes["b1"] == (12,) and shapes["w2"] == (4, 12, 3, 3)
    assert pruned.report.sparsity == {"w1": 0.25}
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert pruned.run(x)["y"].shape == (2, 4, 8, 8)
    assert pruned.size_bytes < art.size_bytes


def test_bad_sparsity_is_refused(digits_cnn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(nbd.ConfigError, match=r"sparsity must be in \[0, 1\)"):
        nbd.prune(digits_cnn, 1.5)


def test_a_model_kept_on_disk_is_pruned(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Models past 2 GiB live on disk with external data; prune reads their weights
    once and leaves the artifact it was given as it was (a small one stands for one)."""
    import onnx

    from tests.servers import affine

    model = onnx.ModelProto()
    model.CopyFrom(affine().onnx)
    onnx.save_model(model, tmp_path / "a.onnx", save_as_external_data=True, size_threshold=0)
    on_disk = nbd.load(tmp_path / "a.onnx")
    pruned, in_memory = nbd.prune(on_disk, 0.5), nbd.prune(affine(), 0.5)
    assert on_disk.payload.folder is not None and pruned.parity is not None
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(pruned.run({"x": x})["y"], in_memory.run({"x": x})["y"])
    assert pruned.report.to_dict() == in_memory.report.to_dict()


def test_a_chain_kept_on_disk_is_pruned_channel_by_channel_as_in_memory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Structured pruning reads a layer's weight again after the layer before it cut its
    inputs: read back from the new file, never the model whole."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((8, 8)).astype(np.float32) for _ in range(3)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("Relu", ["h0"], ["r0"]),
         helper.make_node("MatMul", ["r0", "w1"], ["h1"]), helper.make_node("Relu", ["h1"], ["r1"]),
         helper.make_node("MatMul", ["r1", "w2"], ["y"])],
        "chain", [helper.make_tensor_value_info("x", 1, ["n", 8])],
        [helper.make_tensor_value_info("y", 1, ["n", 8])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, tmp_path / "plain.onnx")
    in_memory = nbd.prune(nbd.load(tmp_path / "plain.onnx"), 0.5, structured=True)
    onnx.save_model(model, tmp_path / "c.onnx", save_as_external_data=True, size_threshold=0)
    on_disk = nbd.load(tmp_path / "c.onnx")
    pruned = nbd.prune(on_disk, 0.5, structured=True)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(pruned.run({"x": x})["y"], in_memory.run({"x": x})["y"])
    assert pruned.report.to_dict() == in_memory.report.to_dict()
    shapes = {t.name: list(t.dims) for t in pruned.onnx.graph.initializer}
    assert shapes == {"w0": [8, 4], "w1": [4, 4], "w2": [4, 8]}
