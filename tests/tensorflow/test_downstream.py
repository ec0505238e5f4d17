"""A Keras model goes through every step after export exactly as a torch one does, and a
SavedModel goes into a Triton repository folder on the tensorflow backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

import nbdeploy as nbd
from nbdeploy.server import config as cfg

from .conftest import digits_cnn, two_heads

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    repo = tmp_path_factory.mktemp("keras-repo")
    nbd.server.start(repo, http_port=0, grpc_port=0)
    yield repo
    nbd.server.stop(repo)


def _data() -> tuple[Any, np.ndarray, np.ndarray]:
    model = digits_cnn()
    x = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    return model, x, model(x).numpy().argmax(-1)  # its own answers as labels


def test_every_step_after_export_works_on_a_keras_model(repo: Path, tmp_path: Path) -> None:
    model, x, y = _data()
    art = nbd.export(model, x[:4], progress=False)
    assert nbd.inspect(art).ops["Conv"] == 1
    opt = nbd.optimize(art, progress=False)
    assert opt.parity is not None and opt.parity.ok
    changed = nbd.diff(art, opt)
    assert changed.nodes_after < changed.nodes_before and changed.max_abs < 1e-5
    q8 = nbd.quantize(opt, "int8-dynamic", progress=False)
    half = nbd.quantize(opt, "fp16", progress=False)
    table = nbd.compare([model, art, opt, q8, half], data=(x, y), progress=False, repeat=1)
    accuracy = {row.variant: row.metric for row in table.rows}
    assert accuracy["digits_cnn [keras]"] == accuracy["digits_cnn"] == 100.0
    assert accuracy["digits_cnn [fp16]"] >= 95.0
    source = table.rows[0]
    assert source.source and source.max_abs_diff == 0.0 and source.p50_ms is not None
    assert "digits_cnn [keras]" in table.to_html()
    dep = nbd.serve(opt, name="keras_cnn", repository=repo)
    client = dep.client()
    item = httpclient.InferInput("input", [3, 8, 8, 1], "FP32")
    item.set_data_from_numpy(x[:3])
    answer = client.infer("keras_cnn", [item]).as_numpy("output")
    np.testing.assert_allclose(answer, model(x[:3]).numpy(), atol=1e-5)
    pushed = nbd.push(opt, tmp_path / "triton-repo", name="keras_cnn")
    assert (pushed.folder / "1" / "model.onnx").is_file()


def test_deploy_magic_takes_a_keras_model(repo: Path) -> None:
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    start_ipython()  # the one shell of this process (returns None once started)
    shell = get_ipython()
    shell.run_line_magic("load_ext", "nbdeploy")
    shell.run_line_magic("config", f"NbDeployMagics.repository = {str(repo)!r}")
    model, x, _ = _data()
    shell.user_ns.update(keras_model=model, keras_x=x[:2])
    dep = shell.run_line_magic("deploy", "keras_model --example keras_x --name keras_magic")
    assert dep.name == "keras_magic"
    answer = dep.try_it(x[:3])  # through the server
    np.testing.assert_allclose(answer.outputs["output"], model(x[:3]).numpy(), atol=1e-5)


def test_a_savedmodel_repository_folder_has_a_config_triton_reads(tmp_path: Path) -> None:
    from tritonclient.utils import InferenceServerException

    from nbdeploy.triton import local

    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    art = nbd.export(two_heads(), x, format="savedmodel", progress=False)
    pushed = nbd.push(art, tmp_path, name="heads")
    assert pushed.backend == "tensorflow"
    assert (pushed.folder / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    config = cfg.from_text((pushed.folder / "config.pbtxt").read_text())
    assert config.platform == "tensorflow_savedmodel" and config.max_batch_size > 0
    assert [(t.name, list(t.dims)) for t in config.input] == [("image", [8, 8, 1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [3]), ("score", [1])]
    reason = local.unavailable_reason()
    if reason:
        pytest.skip(f"config complete; no local Triton to read it: {reason}")
    with (
        local.running(tmp_path, load_all=False) as (http, _),
        pytest.raises(InferenceServerException) as info,
    ):
        httpclient.InferenceServerClient(http).load_model("heads")
    # Triton read the config and stopped only at the backend this build lacks.
    assert "unable to find backend library for backend 'tensorflow'" in info.value.message()


def test_a_savedmodel_is_a_tensorflow_model_format_for_kserve() -> None:
    from tests.deploy import kserve_schema

    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    art = nbd.export(two_heads(), x, format="savedmodel", progress=False)
    made = nbd.manifests(art, target="kserve", storage_uri="s3://bucket/repo", name="heads")
    (service,) = made.objects[:1]
    assert service["spec"]["predictor"]["model"]["modelFormat"] == {"name": "tensorflow"}
    assert kserve_schema.problems(service) == []
