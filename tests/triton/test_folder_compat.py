"""After every kind of load the local server supports, the folder it wrote is a
repository ``tritonserver`` reads: config.pbtxt is complete (platform, inputs, outputs as
in the model file), and the real Triton parses it.

The nvidia-pytriton wheel's Triton has no onnxruntime backend, so it cannot run these
ONNX models; what it can show is that it read and completed each config and stopped only
at the missing backend library (a config it cannot read fails earlier, with 'failed to
poll from model repository' — checked here too, so the test can tell the two apart).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import nbdeploy as nbd
from nbdeploy.server import config as cfg
from tests.servers import affine, serving_affine

pytestmark = pytest.mark.slow
MISSING_BACKEND = "unable to find backend library for backend 'onnxruntime'"


def _override(client: httpclient.InferenceServerClient) -> None:
    client.load_model("affine", config='{"max_batch_size": 16}')  # Triton's own example


def _override_with_file(client: httpclient.InferenceServerClient) -> None:
    config = json.dumps({"name": "affine", "version_policy": {"specific": {"versions": [7]}}})
    client.load_model("affine", config=config,
                      files={"file:7/model.onnx": affine(3).onnx.SerializeToString()})  # fmt: skip


LOADS: dict[str, Callable[[Path], object]] = {
    "nbd.serve": lambda repo: None,  # the fixture's first version
    "canary": lambda repo: nbd.serve(affine(1), name="affine", canary=20, repository=repo),
    "promote": lambda repo: nbd.deployments(repo)[0].promote(),
    "config override": lambda repo: _override(nbd.deployments(repo)[0].client()),
    "config and file overrides": lambda repo: _override_with_file(
        nbd.deployments(repo)[0].client()),
}  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    with serving_affine(tmp_path) as repo:
        yield repo


@pytest.mark.parametrize("load", LOADS)
def test_the_folder_stays_a_triton_repository(repo: Path, load: str) -> None:
    from nbdeploy.triton import local

    reason = local.unavailable_reason()
    LOADS[load](repo)
    config = cfg.from_text((repo / "affine" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [3])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("y", [2])]
    if reason:
        pytest.skip(f"config complete; no local Triton to read it: {reason}")
    (repo / "unreadable" / "1").mkdir(parents=True)
    (repo / "unreadable" / "config.pbtxt").write_text("max_batch_size: 'x'\n")
    with local.running(repo, load_all=False) as (http, _):
        client = httpclient.InferenceServerClient(http)
        for name, wanted in (("affine", MISSING_BACKEND),
                             ("unreadable", "failed to poll from model repository")):  # fmt: skip
            with pytest.raises(InferenceServerException) as info:
                client.load_model(name)
            assert wanted in info.value.message(), (name, info.value.message())
