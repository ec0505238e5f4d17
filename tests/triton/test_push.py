"""nbd.push against a real Triton (nvidia-pytriton's tritonserver, explicit model
control, on loopback): auto backend, versions, gRPC, repositories on disk, every error.

That tritonserver build has no onnxruntime backend, so "auto" falls back to the Python
backend here, and native onnxruntime configs are checked by parsing them back into
``ModelConfig`` instead of by serving them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import nbdeploy as nbd
from nbdeploy.triton import model_folder
from tests.servers import Endpoint, affine, expected

pytestmark = pytest.mark.slow
X = np.ones((3, 3), np.float32)


def _answer(
    client: httpclient.InferenceServerClient, name: str, version: str = ""
) -> tuple[str, np.ndarray]:
    item = httpclient.InferInput("x", list(X.shape), "FP32")
    item.set_data_from_numpy(X)
    result = client.infer(name, [item], model_version=version)
    return result.get_response()["model_version"], result.as_numpy("y")


def test_auto_falls_back_to_python_and_checks_parity_through_the_wire(triton: Endpoint) -> None:
    with pytest.warns(UserWarning, match="no onnxruntime backend") as caught:
        first = nbd.push(affine(0), triton.http, name="pushed")
    assert caught[0].filename == __file__  # it points at the caller's line, not at nbdeploy
    assert (first.version, first.backend) == (1, "python")
    assert first.parity is not None and first.parity.ok
    assert "pushed v1 (python)" in str(first)
    with pytest.warns(UserWarning):
        second = nbd.push(affine(1), f"http://{triton.http}", name="pushed")
    assert second.version == 2
    version, y = _answer(second.client(), "pushed")
    assert version == "2" and np.allclose(y, expected(X, 1.0))


def test_push_over_grpc(triton: Endpoint) -> None:
    result = nbd.push(affine(0), f"grpc://{triton.grpc}", name="pushed-grpc", backend="python")
    assert result.parity is not None and result.parity.ok
    assert result.client().is_model_ready("pushed-grpc", "1")


def test_a_repository_written_to_disk_is_loaded_by_triton(triton: Endpoint) -> None:
    written = nbd.push(affine(3), triton.repository, name="from-disk", backend="python")
    assert written.folder == triton.repository / "from-disk"
    assert (written.folder / "1" / "model.py").is_file()
    client = httpclient.InferenceServerClient(triton.http)
    client.load_model("from-disk")  # no overrides: Triton reads the folder itself
    version, y = _answer(client, "from-disk")
    assert version == "1" and np.allclose(y, expected(X, 3.0))


def test_native_onnxruntime_config_parses_back(tmp_path: Path) -> None:
    result = nbd.push(affine(0), tmp_path, name="native", max_batch_size=16, instances=2)
    assert result.backend == "onnxruntime" and result.version == 1
    config = text_format.Parse((tmp_path / "native" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 16
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [3])]
    assert config.input[0].data_type == mc.TYPE_FP32 and config.instance_group[0].count == 2
    assert (tmp_path / "native" / "1" / "model.onnx").is_file()
    assert nbd.push(affine(1), tmp_path, name="native").version == 2
    gpu = model_folder.triton_config(affine(0), "g", "onnxruntime", gpu=True, tensorrt=True)
    assert gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert gpu.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"


def test_torchscript_maps_to_libtorch(tmp_path: Path) -> None:
    import torch

    model = torch.nn.Linear(3, 2).eval()
    art = nbd.export(model, torch.ones(1, 3), format="torchscript", name="ts")
    result = nbd.push(art, tmp_path, name="ts")
    config = text_format.Parse((tmp_path / "ts" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert result.backend == "pytorch" and config.platform == "pytorch_libtorch"
    assert (tmp_path / "ts" / "1" / "model.pt").is_file()
    with pytest.raises(nbd.ConfigError, match="cannot use backend 'python'"):
        nbd.push(art, tmp_path, name="ts", backend="python")


def test_unreachable_server_names_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(nbd.PushError, match=f"cannot reach Triton at 127.0.0.1:{port}"):
        nbd.push(affine(0), f"127.0.0.1:{port}", name="x")


def test_a_rejected_config_shows_tritons_message(triton: Endpoint) -> None:
    with pytest.raises(nbd.PushError, match=r"refused model 'native'.*onnxruntime"):
        nbd.push(affine(0), triton.http, name="native", backend="onnxruntime")


def test_parity_failure_through_the_wire(triton: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection at the file boundary: the server receives another model's weights.
    real = model_folder.version_files
    monkeypatch.setattr(
        "nbdeploy.triton.push.version_files", lambda _, number, how: real(affine(9), number, how)
    )
    with pytest.raises(nbd.PushError, match="answers differently from the artifact"):
        nbd.push(affine(0), triton.http, name="drifted", backend="python")


def test_a_server_not_in_explicit_mode(tmp_path: Path) -> None:
    from nbdeploy.triton import local

    reason = local.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with (
        local.running(tmp_path, control_mode="none") as (http, _),
        pytest.raises(nbd.PushError, match="--model-control-mode=explicit"),
    ):
        nbd.push(affine(0), http, name="x", backend="python")


def _wide(units: int = 400) -> nbd.Artifact:
    """y = x @ W: 3 × ``units`` float weights, ~5 kB each hundred units."""
    import onnx
    from onnx import helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((3, units)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "wide",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", units])],
        [numpy_helper.from_array(weights, "W")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return nbd.export(model, name="wide", example={"x": X})


def test_a_model_larger_than_a_servers_request_limit_goes_through_its_repository(
    tmp_path: Path,
) -> None:
    """As Triton users do with large models: write the version where the server reads
    its repository, then load it by name; nothing large crosses the wire. Without that,
    the refusal names the limit and the way around it."""
    repository = tmp_path / "shared"
    server = nbd.server.start(repository, http_port=0, grpc_port=0, max_request_bytes=4096)
    address = server.http_url.removeprefix("http://")
    art = _wide(400)  # ~6 kB of weights: more than the 4 kB limit, base64-encoded
    try:
        with pytest.raises(nbd.PushError, match=r"travels inside the load request, and the "
                           r"request is larger than the server's limit of 4096 bytes\. Write it "
                           r"where the server reads its repository instead") as info:  # fmt: skip
            nbd.push(art, address)
        assert "repository=" in str(info.value) and "nbd.serve(art)" in str(info.value)
        # told the limit, push refuses before it encodes anything (Triton's 64 MiB default)
        with pytest.raises(nbd.PushError, match=r"the request would be about [\d,]+ bytes, "
                           r"more than the 4,096 the server accepts"):  # fmt: skip
            nbd.push(art, address, max_request_bytes=4096)
        pushed = nbd.push(art, address, repository=repository)
        assert (pushed.version, pushed.backend) == (1, "onnxruntime")
        assert pushed.parity is not None and pushed.parity.ok
        again = nbd.push(art, address, repository=repository)
        assert again.version == 2  # numbered past what the server and the folder know
    finally:
        nbd.server.stop(repository)
