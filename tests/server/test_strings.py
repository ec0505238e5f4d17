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
