"""The pipeline's steps run in process on real models — a scikit-learn pipeline pickled
with joblib, an ONNX file, a TorchScript file — through export → optimize → quantize →
parity → deploy into a local folder: the Triton repository Triton would load and the
InferenceService that would be applied (checked against KServe 0.20's SDK models). Only
the kubernetes client's create/patch (``cluster.py``) is not run: no cluster here."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import joblib
import numpy as np
import onnx
import pytest
import skl2onnx
import yaml
from google.protobuf import text_format
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.grpc import model_config_pb2

import nbdeploy as nbd
from nbdeploy.kubeflow import rollout, sources, steps
from nbdeploy.kubeflow.sources import kind_of
from tests.deploy import kserve_schema

KFP_URI = "minio://mlpipeline/v2/artifacts/nbdeploy-digits/run-1/deploy/repository"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """What a training step leaves: the fitted model (joblib) and a batch of inputs; beside
    them the same model as a plain ONNX file (skl2onnx, no nbdeploy metadata)."""
    folder = tmp_path_factory.mktemp("training")
    x, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=300, random_state=0))
    model.fit(x, y)
    joblib.dump(model, folder / "digits.joblib")
    np.save(folder / "rows.npy", x[:128].astype(np.float32))  # what the models take
    proto = skl2onnx.to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False})
    onnx.save(proto, folder / "digits.onnx")
    return folder / "digits.joblib", folder / "rows.npy"


@pytest.mark.parametrize("file", ["digits.joblib", "digits.onnx"])
def test_a_model_file_goes_through_every_step_to_a_triton_folder(
    trained: tuple[Path, Path], tmp_path: Path, file: str
) -> None:
    model, rows = trained[0].with_name(file), trained[1]
    exported = steps.export_model(model, rows, tmp_path / "exported", name="digits")
    if file.endswith(".onnx"):
        assert exported.parity is None  # a passthrough: the parity step checks against the file
    else:
        assert exported.parity is not None and exported.parity.ok
    steps.optimize_model(tmp_path / "exported", tmp_path / "optimized")
    quantized = steps.quantize_model(tmp_path / "optimized", rows, tmp_path / "quantized",
                                     scheme="int8-dynamic")  # fmt: skip
    assert [s.kind for s in quantized.lineage.steps][-2:] == ["optimize", "quantize"]
    parity = steps.check_parity(model, tmp_path / "quantized", tmp_path / "optimized", rows,
                                atol=0.05)  # fmt: skip
    assert parity.ok and parity.reference == str(model)  # against the sklearn model itself

    service = rollout.deploy_model(tmp_path / "quantized", tmp_path / "repository",
                                   tmp_path / "service.yaml", name="digits", storage_uri=KFP_URI,
                                   canary=10, namespace="ml", apply=False)  # fmt: skip
    config = text_format.Parse(
        (tmp_path / "repository/digits/config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert (config.name, config.platform) == ("digits", "onnxruntime_onnx")
    assert len(config.input) == 1 and list(config.input[0].dims) == [64]
    assert {o.name for o in config.output} == {"label", "probabilities"}
    served = nbd.load(tmp_path / "repository/digits/1/model.onnx")
    x = np.load(rows)[:8].astype(np.float32)
    np.testing.assert_array_equal(served.run(x)["label"], quantized.run(x)["label"])

    assert kserve_schema.problems(service) == []
    assert yaml.safe_load((tmp_path / "service.yaml").read_text()) == service
    assert service["metadata"]["namespace"] == "ml"
    predictor = service["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == KFP_URI.replace("minio://", "s3://")
    assert predictor["canaryTrafficPercent"] == 10  # serverless, the default


def test_failing_parity_stops_with_what_to_do(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, rows = trained
    steps.export_model(model, rows, tmp_path / "exported", name="digits")
    steps.quantize_model(tmp_path / "exported", rows, tmp_path / "q", scheme="int8-dynamic")
    with pytest.raises(nbd.ParityError, match=r"differs from .*loosen atol/rtol") as caught:
        steps.check_parity(model, tmp_path / "q", tmp_path / "exported", rows, atol=1e-7, rtol=0)
    assert caught.value.output == "probabilities" and caught.value.max_abs > 1e-7


def test_onnx_and_torchscript_files_even_without_a_suffix(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch

    model, rows = trained
    onnx_file = steps.export_model(model, rows, tmp_path / "e", name="digits").save(
        tmp_path / "digits.onnx"
    )
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    torch.jit.trace(net.eval(), torch.zeros(2, 64)).save(str(tmp_path / "net.pt"))
    with (tmp_path / "digits.pkl").open("wb") as stream:  # plain pickle, not joblib
        pickle.dump(joblib.load(model), stream)
    files = [(onnx_file, "onnx"), (model, "sklearn"), (tmp_path / "digits.pkl", "sklearn"),
             (tmp_path / "net.pt", "torchscript")]  # fmt: skip
    for source, kind in files:
        bare = shutil.copy(source, tmp_path / f"{Path(source).suffix[1:]}-model")  # as in KFP
        assert kind_of(bare).name == kind
        out = tmp_path / f"{Path(source).suffix[1:]}-out"
        art = steps.export_model(bare, rows, out, name=kind)
        parity = steps.check_parity(bare, out, out, rows)
        assert art.format == "onnx" and parity.ok and parity.reference == str(bare)
    with pytest.raises(nbd.ConfigError, match=r"one of \['keras', 'onnx', 'sklearn', 'torc"):
        kind_of(model, "tflite")
    with pytest.raises(nbd.ConfigError, match=r"numpy\.save"):
        steps.load_rows(model)


def test_a_kind_that_cannot_run_here_is_checked_against_the_previous_step(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a .keras row would be where TensorFlow is not installed: no reference runner.
    onnx_file, rows = trained[0].with_name("digits.onnx"), trained[1]
    kinds = tuple(dataclasses.replace(k, reference=None) for k in sources.KINDS)
    monkeypatch.setattr(sources, "KINDS", kinds)
    steps.export_model(onnx_file, rows, tmp_path / "exported", name="digits")
    steps.quantize_model(tmp_path / "exported", rows, tmp_path / "q", scheme="fp16")
    parity = steps.check_parity(onnx_file, tmp_path / "q", tmp_path / "exported", rows, atol=1e-2)
    assert parity.ok and parity.reference == f"the previous step ({tmp_path / 'exported'})"


def test_a_keras_file_is_one_more_row(trained: tuple[Path, Path], tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    rows = trained[1]
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                            keras.layers.Dense(10, activation="softmax")])  # fmt: skip
    net.save(tmp_path / "net.keras")
    bare = shutil.copy(tmp_path / "net.keras", tmp_path / "model")  # as a KFP artifact's file
    assert kind_of(bare).name == "keras"
    art = steps.export_model(bare, rows, tmp_path / "exported", name="net")
    assert art.format == "onnx" and art.parity is not None and art.parity.ok
    steps.quantize_model(tmp_path / "exported", rows, tmp_path / "q", scheme="int8-dynamic")
    # int8-dynamic's 7-bit weights (onnxruntime's reduced range) move this untrained
    # softmax by up to ~0.05: the budget is a quantization's, not an export's.
    parity = steps.check_parity(bare, tmp_path / "q", tmp_path / "exported", rows, atol=0.1)
    assert parity.ok and parity.reference == str(bare)  # Keras itself ran the reference
