"""String (BYTES) inputs end to end: a scikit-learn pipeline with a categorical column,
served and called over HTTP and gRPC; config types are Triton's (TYPE_STRING)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import nbdeploy as nbd

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    nbd.server.stop(tmp_path)


def test_categorical_strings_through_the_server(repo: Path) -> None:
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.standard_normal(60).astype(np.float32),
                          "region": rng.choice(["north", "south", "east"], 60)})  # fmt: skip
    labels = (frame["region"] == "north").astype(int) + (frame["size"] > 0)
    pipeline = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), ["size"]), ("cat", OneHotEncoder(), ["region"])]
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame, labels)
    art = nbd.export(pipeline, frame.head(8), name="regions")
    dep = nbd.serve(art, name="regions", repository=repo)
    config = dep.client().get_model_config("regions")
    assert {i["name"]: i["data_type"] for i in config["input"]}["region"] == "TYPE_STRING"
    want = pipeline.predict(frame.head(6))
    for module, client in ((httpclient, dep.client()), (grpcclient, dep.client("grpc"))):
        items: list[Any] = []
        for name, datatype in (("size", "FP32"), ("region", "BYTES")):
            column = frame[name].to_numpy()[:6].reshape(-1, 1)
            item = module.InferInput(name, list(column.shape), datatype)
            item.set_data_from_numpy(column.astype(object if datatype == "BYTES" else np.float32))
            items.append(item)
        np.testing.assert_array_equal(client.infer("regions", items).as_numpy("label"), want)


def test_serving_models_that_take_text_checks_strings_as_text(repo: Path) -> None:
    """A BYTES identity answers bytes through the wire and str in process: the same text.
    A model whose strings must be numbers cannot run a made-up feed: nothing to compare,
    and it still serves."""
    from onnx import TensorProto, helper

    def model(nodes: list[Any], out_type: int) -> nbd.Artifact:
        graph = helper.make_graph(
            nodes, "m", [helper.make_tensor_value_info("x", TensorProto.STRING, ["b", 4])],
            [helper.make_tensor_value_info("y", out_type, ["b", 4])],
        )  # fmt: skip
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        return nbd.export(proto, name="m")

    echo = nbd.serve(model([helper.make_node("Identity", ["x"], ["y"])], TensorProto.STRING),
                     name="echo", repository=repo)  # fmt: skip
    assert echo.parity is not None and echo.parity.ok
    numbers = model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)],
                    TensorProto.INT32)  # fmt: skip
    dep = nbd.serve(numbers, name="numbers", repository=repo)
    assert dep.parity is None and dep.traffic == {1: 100.0}
    item = httpclient.InferInput("x", [1, 4], "BYTES")
    item.set_data_from_numpy(np.array([[b"1", b"2", b"30", b"-4"]], dtype=object))
    assert dep.client().infer("numbers", [item]).as_numpy("y").tolist() == [[1, 2, 30, -4]]
