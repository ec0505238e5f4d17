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
