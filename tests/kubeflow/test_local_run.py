"""The pipeline run for real by kfp's local runner (``kfp.local.SubprocessRunner``): each
component's source, as KFP ships it to the container, runs through KFP's executor in a
subprocess on this machine's Python, reading and writing artifacts under a local
pipeline root. ``apply=False``: the kubernetes create/patch is the one thing left out."""

from __future__ import annotations

import warnings
from pathlib import Path

import joblib
import kfp.local
import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tritonclient.grpc import model_config_pb2

import nbdeploy as nbd
from tests.deploy import kserve_schema

ROOT = Path(__file__).parents[2]
# kfp.local warns that a custom image's packages may differ from this Python's: here this
# Python (with this checkout's nbdeploy) is the point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:You may be attemping to run a task that uses custom:RuntimeWarning"
)


@pytest.fixture
def run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A trained iris model and its rows in ``tmp_path``; the runner set up on it."""
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=500, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a small net; good enough here
        model.fit(x, y)
    joblib.dump(model, tmp_path / "iris.joblib")
    np.save(tmp_path / "rows.npy", x.astype(np.float32))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the steps import this checkout's nbdeploy
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                   pipeline_root=str(tmp_path / "root"))  # fmt: skip
    return tmp_path


def _run(folder: Path, **options: object) -> Path:
    pipeline = nbd.kubeflow.pipeline(base_image="unused-by-the-local-runner", name="iris",
                                     namespace="ml", apply=False, **options)  # fmt: skip
    pipeline(model_uri=str(folder / "iris.joblib"), data_uri=str(folder / "rows.npy"))
    [run] = (folder / "root").iterdir()
    return run


def test_every_component_runs_and_leaves_a_triton_repository(run_folder: Path) -> None:
    run = _run(run_folder, quantize="int8-dynamic", atol=0.05, canary=25, mode="standard")
    config = text_format.Parse((run / "deploy/repository/iris/config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())  # fmt: skip
    assert config.platform == "onnxruntime_onnx" and list(config.input[0].dims) == [4]
    served = nbd.load(run / "deploy/repository/iris/1/model.onnx")
    assert [s.kind for s in served.lineage.steps][-2:] == ["optimize", "quantize"]
    service = yaml.safe_load((run / "deploy/service").read_text())
    assert kserve_schema.problems(service) == []
    # A first release in Standard mode: nothing to share traffic with yet, so no canary.
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert service["spec"]["predictor"]["model"]["storageUri"] == str(run / "deploy/repository")
    assert "canary" not in service["spec"]
    metrics = yaml.safe_load((run / "parity/executor_output.json").read_text())
    assert 0 < metrics["artifacts"]["report"]["artifacts"][0]["metadata"]["parity_max_abs"] < 0.05


def test_a_parity_failure_stops_the_run_before_deploy(run_folder: Path) -> None:
    with pytest.raises(RuntimeError, match="parity"):
        _run(run_folder, quantize="int8-dynamic", atol=1e-7, rtol=0.0)
    [run] = (run_folder / "root").iterdir()
    assert (run / "quantize/quantized/model.onnx").is_file()
    assert not (run / "deploy").exists()
