"""Tiny ONNX models written with onnx.helper, for tests that need raw ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def affine(opset: int = 17) -> onnx.ModelProto:
    """y = x @ W + b over a dynamic batch: x float32[batch, 3] -> y float32[batch, 2]."""
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    b = numpy_helper.from_array(np.array([0.5, -1.0], dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def convnet() -> onnx.ModelProto:
    """Conv (4 filters, 3x3) -> Relu -> MaxPool -> Flatten -> MatMul: x float32[batch, 1, 8, 8]
    -> scores float32[batch, 10], seeded weights. Five nodes, every one a common kernel."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "fc")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("MatMul", ["f", "fc"], ["scores"]),
        ],
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])],
        [w, fc],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def big_lookup(folder: Path, rows: int) -> Path:
    """A Gather from a float32 table of ``rows`` rows, written as ``model.onnx`` with the
    table as external data (protobuf cannot hold it in memory past 2 GiB). Runs instantly."""
    data = folder / "table.bin"
    table = np.lib.format.open_memmap(folder / "scratch.npy", "w+", np.float32, (rows, 1))
    table[7, 0], table[rows - 1, 0] = 42.0, -3.0
    table.flush()
    with data.open("wb") as out:
        table.tofile(out)
    del table
    (folder / "scratch.npy").unlink()
    init = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[rows, 1])
    init.data_location = TensorProto.EXTERNAL
    for key, value in {"location": data.name, "offset": "0", "length": str(rows * 4)}.items():
        init.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["values"], axis=0)],
        "big_lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", 1])],
        [init],
    )
    path = folder / "model.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
