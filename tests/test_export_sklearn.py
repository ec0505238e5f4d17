from __future__ import annotations

import numpy as np
import pytest

import nbdeploy as nbd

pytest.importorskip("skl2onnx")
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    GradientBoostingRegressor,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x[:600], y[:600]


def test_pipeline_classifier_exports_labels_and_probabilities(digits) -> None:
    x, y = digits
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    art = nbd.export(model, x[:16], name="digits")
    assert [s.name for s in art.outputs] == ["label", "probabilities"]
    assert art.inputs[0].shape == ("batch", 64)
    assert [s.shape for s in art.outputs] == [("batch",), ("batch", 10)]
    assert art.parity is not None and art.parity.ok and art.parity.batch_sizes == (16, 17)
    out = art.run(x[100:300])
    np.testing.assert_array_equal(out["label"], model.predict(x[100:300]))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x[100:300]), atol=1e-4)


def test_ensembles(digits) -> None:
    x, y = digits
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    voting = VotingClassifier(
        [
            ("lr", LogisticRegression(max_iter=500)),
            ("rf", RandomForestClassifier(5, random_state=0)),
        ],
        voting="soft",
        flatten_transform=False,
    ).fit(x, y)
    for model in (forest, voting):
        art = nbd.export(model, x[:8])
        assert art.parity is not None and art.parity.ok, art.parity
        np.testing.assert_array_equal(art.run(x[:200])["label"], model.predict(x[:200]))


def test_regressor_and_transformer() -> None:
    x, y = load_diabetes(return_X_y=True)
    reg = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(x, y)
    art = nbd.export(reg, x[:5], atol=1e-3)
    assert art.parity is not None and art.parity.ok
    pca = PCA(3).fit(x)
    assert nbd.export(pca, x[:5]).outputs[0].shape[-1] == 3


def test_dataframe_pipeline_over_mixed_columns() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, 200).astype(np.float32),
            "city": rng.choice(["paris", "lyon", "nice"], 200),
        }
    )
    target = (frame["age"] > 40).astype(int) ^ (frame["city"] == "nice").astype(int)
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(), ["city"])]
    )
    model = make_pipeline(pre, LogisticRegression()).fit(frame, target)
    art = nbd.export(model, frame.head(10), name="people")
    assert [(s.name, s.dtype) for s in art.inputs] == [("age", "float32"), ("city", "object")]
    out = art.run({"age": frame[["age"]].to_numpy(), "city": frame[["city"]].to_numpy()})
    np.testing.assert_array_equal(out["label"], model.predict(frame))


def test_missing_example_and_bad_shapes(digits) -> None:
    x, y = digits
    model = LogisticRegression(max_iter=200).fit(x, y)
    with pytest.raises(nbd.ExampleError, match="pass example="):
        nbd.export(model)
    with pytest.raises(nbd.ExampleError, match=r"reshape\(1, -1\)"):
        nbd.export(model, x[0])


def test_unconvertible_estimator_wraps_skl2onnx_error(digits) -> None:
    x, y = digits
    model = VotingClassifier([("lr", LogisticRegression(max_iter=200))], voting="soft").fit(x, y)
    with pytest.raises(nbd.ExportError, match="flatten_transform=False") as info:
        nbd.export(model, x[:4])
    assert isinstance(info.value.__cause__, NotImplementedError)


def test_torchscript_is_refused_for_sklearn(digits) -> None:
    x, y = digits
    with pytest.raises(nbd.ConfigError, match="needs a PyTorch model"):
        nbd.export(LogisticRegression().fit(x, y), x[:2], format="torchscript")
