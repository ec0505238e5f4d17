"""TF Serving's gRPC API on our server, called the way every TF Serving tutorial calls it
(``tensorflow-serving-api``'s stubs, ``tf.make_tensor_proto`` / ``tf.make_ndarray``),
against the real server in a subprocess; answers compared with onnxruntime's on the same
artifact."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy.errors import ServerError
from tests.servers import Endpoint, affine, expected

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402 - after the skip: needs tensorflow
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

pytestmark = pytest.mark.slow
TOKEN = "tfs-s3cret"
LIMIT = 2**20  # the guarded server's max_request_bytes


# -- the models served: one builder each, served under its key ---------------------------


def torch_mlp() -> nbd.Artifact:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return nbd.export(model.eval(), torch.randn(2, 4), name="mlp")


def sklearn_classifier() -> nbd.Artifact:
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    model = LogisticRegression(max_iter=200).fit(x, (x[:, 0] > 0) + (x[:, 1] > 0))
    return nbd.export(model, x[:8], name="classifier")


def texts() -> nbd.Artifact:
    """Strings in; the numbers they spell (int32) and the strings themselves out."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["text"], ["number"], to=TensorProto.INT32),
         helper.make_node("Identity", ["text"], ["echo"])],
        "texts", [helper.make_tensor_value_info("text", TensorProto.STRING, ["b", 2])],
        [helper.make_tensor_value_info("number", TensorProto.INT32, ["b", 2]),
         helper.make_tensor_value_info("echo", TensorProto.STRING, ["b", 2])],
    )  # fmt: skip
    return nbd.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def keras_heads() -> nbd.Artifact:
    """A functional Keras model: input ``image``, outputs ``logits`` and ``score``."""
    from tests.tensorflow.conftest import two_heads

    return nbd.export(two_heads(), name="heads")


MODELS: dict[str, Callable[[], nbd.Artifact]] = {
    "mlp": torch_mlp, "classifier": sklearn_classifier, "texts": texts,
    "heads": keras_heads}  # fmt: skip


@dataclass(frozen=True)
class TfsServer:
    """A server under test: its TF Serving gRPC address, and the artifacts it serves."""

    url: str
    http: Endpoint
    artifacts: dict[str, nbd.Artifact]


@pytest.fixture(scope="module")
def tfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TfsServer]:
    """The MODELS (torch, scikit-learn, strings), and ``affine`` (ONNX) v1 (offset 0) with
    v2 (offset 10) as a 50% canary."""
    repo = tmp_path_factory.mktemp("tfs")
    status = nbd.server.start(repo, http_port=0, grpc_port=0, tfs_grpc_port=0)
    try:
        artifacts = {name: build() for name, build in MODELS.items()}
        for name, art in artifacts.items():
            nbd.serve(art, name=name, repository=repo)
        nbd.serve(affine(0), name="affine", repository=repo)
        nbd.serve(affine(10), name="affine", canary=50, repository=repo)
        http = Endpoint("nbdeploy", status.http_url.removeprefix("http://"), status.grpc_url, repo)
        yield TfsServer(status.tfs_grpc_url, http, artifacts)
    finally:
        nbd.server.stop(repo)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with a token and a 1 MiB request limit; its TF Serving gRPC address."""
    repo = tmp_path_factory.mktemp("tfs-guarded")
    status = nbd.server.start(repo, http_port=0, grpc_port=0, tfs_grpc_port=0, token=TOKEN,
                              max_request_bytes=LIMIT)  # fmt: skip
    try:
        nbd.serve(affine(), name="affine", repository=repo)
        yield status.tfs_grpc_url
    finally:
        nbd.server.stop(repo)


def predict_request(name: str, **inputs: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# -- Predict -------------------------------------------------------------------------------


def test_predict_a_torch_model_as_the_tutorials_do(tfs: TfsServer) -> None:
    art = tfs.artifacts["mlp"]
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    channel = grpc.insecure_channel(tfs.url)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mlp"
    request.model_spec.signature_name = "serving_default"
    request.inputs[art.inputs[0].name].CopyFrom(tf.make_tensor_proto(x))
    response = stub.Predict(request, 10.0)
    output = art.outputs[0].name
    np.testing.assert_allclose(tf.make_ndarray(response.outputs[output]),
                               art.run(x)[output], rtol=1e-6, atol=1e-6)  # fmt: skip
    assert response.model_spec.name == "mlp" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_predict_a_keras_model_as_the_tutorials_do(tfs: TfsServer) -> None:
    from tests.tensorflow.conftest import two_heads

    x = np.random.default_rng(2).random((3, 8, 8, 1), dtype=np.float32)
    channel = grpc.insecure_channel(tfs.url)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "heads"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(x))
    response = stub.Predict(request, 10.0)
    keras_answer = two_heads()(x)  # the same seeded weights as the model served
    for name in ("logits", "score"):
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]),
                                   keras_answer[name].numpy(), atol=1e-5)  # fmt: skip


def test_predict_a_scikit_learn_classifier_every_output(tfs: TfsServer) -> None:
    art = tfs.artifacts["classifier"]
    x = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    response = stub.Predict(predict_request("classifier", **{art.inputs[0].name: x}), 10.0)
    want = art.run(x)
    assert set(response.outputs) == set(want) and len(want) >= 2  # labels and probabilities
    for name, value in want.items():
        got = tf.make_ndarray(response.outputs[name])
        assert got.dtype == np.asarray(value).dtype
        np.testing.assert_allclose(got, value, rtol=1e-6, atol=1e-6)


def test_a_version_number_picks_the_version(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for version, offset in ((1, 0.0), (2, 10.0)):
        request = predict_request("affine", x=x)
        request.model_spec.version.value = version
        response = stub.Predict(request, 10.0)
        assert response.model_spec.version.value == version
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), expected(x, offset))


def test_version_labels_follow_the_traffic_split(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    x = np.ones((1, 3), np.float32)
    for label, version in (("stable", 1), ("canary", 2)):
        request = predict_request("affine", x=x)
        request.model_spec.version_label = label
        assert stub.Predict(request, 10.0).model_spec.version.value == version
    request = predict_request("affine", x=x)
    request.model_spec.version_label = "beta"
    err = failure(lambda: stub.Predict(request, 10.0))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "canary (version 2), stable (version 1)" in err.details()


def test_without_a_version_the_canary_split_answers(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    x = np.ones((1, 3), np.float32)
    seen = set()
    for _ in range(60):  # both versions answer 50% each: missing one has odds 2**-59
        response = stub.Predict(predict_request("affine", x=x), 10.0)
        version = response.model_spec.version.value
        offset = {1: 0.0, 2: 10.0}[version]
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), expected(x, offset))
        seen.add(version)
    assert seen == {1, 2}


def test_string_tensors_travel_both_ways(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    text = np.array([[b"1", b"-20"], [b"300", b"4"]], dtype=object)
    response = stub.Predict(predict_request("texts", text=text), 10.0)
    want = tfs.artifacts["texts"].run(text.astype(str).astype(object))  # in process: str
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["number"]), want["number"])
    echo = tf.make_ndarray(response.outputs["echo"])
    assert echo.tolist() == text.tolist()
    assert response.outputs["echo"].dtype == tf.string.as_datatype_enum


def test_output_filter_returns_the_outputs_asked_for(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    request = predict_request("texts", text=np.array([[b"7", b"8"]], dtype=object))
    request.output_filter.append("number")
    assert list(stub.Predict(request, 10.0).outputs) == ["number"]


def test_bad_requests_get_the_codes_tf_serving_gives(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    x = np.ones((1, 3), np.float32)
    err = failure(lambda: stub.Predict(predict_request("affine", input=x), 10.0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "['x']" in err.details()
    err = failure(lambda: stub.Predict(predict_request("affine", x=x.astype(np.float64)), 10.0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'x' of model 'affine' is DT_DOUBLE, but the signature takes DT_FLOAT" in (
        err.details())  # fmt: skip
    assert "dtype=tf.float32" in err.details()
    err = failure(lambda: stub.Predict(predict_request("nosuch", x=x), 10.0))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "nosuch" in err.details()
    request = predict_request("affine", x=x)
    request.model_spec.signature_name = "predict_images"
    err = failure(lambda: stub.Predict(request, 10.0))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "serving_default" in err.details()


def test_requests_are_counted_in_the_v2_statistics(tfs: TfsServer) -> None:
    def successes() -> int:
        status, doc = tfs.http.request("GET", "/v2/models/mlp/versions/1/stats")
        assert status == 200
        return int(doc["model_stats"][0]["inference_stats"]["success"]["count"])

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    name = tfs.artifacts["mlp"].inputs[0].name
    before = successes()
    for _ in range(3):
        stub.Predict(predict_request("mlp", **{name: np.ones((1, 4), np.float32)}), 10.0)
    assert successes() == before + 3


# -- metadata, status, and what is not served -----------------------------------------------


def test_get_model_metadata_gives_the_serving_default_signature(tfs: TfsServer) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(tfs.url))
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "affine"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, 10.0)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    x, y = signature.inputs["x"], signature.outputs["y"]
    assert x.dtype == y.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in x.tensor_shape.dim] == [-1, 3]
    assert [d.size for d in y.tensor_shape.dim] == [-1, 2]
    assert response.model_spec.version.value == 2  # the newest version taking traffic
    request.model_spec.version.value = 1
    assert stub.GetModelMetadata(request, 10.0).model_spec.version.value == 1
    del request.metadata_field[:]
    err = failure(lambda: stub.GetModelMetadata(request, 10.0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "signature_def" in err.details()


def test_get_model_status_lists_the_loaded_versions(tfs: TfsServer) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(tfs.url))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "affine"
    response = stub.GetModelStatus(request, 10.0)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (1, available), (2, available)]  # fmt: skip
    assert all(s.status.error_code == 0 for s in response.model_version_status)
    request.model_spec.version.value = 2
    assert [s.version for s in stub.GetModelStatus(request, 10.0).model_version_status] == [2]
    request.model_spec.name = "nosuch"
    assert failure(lambda: stub.GetModelStatus(request, 10.0)).code() == grpc.StatusCode.NOT_FOUND


def test_what_a_predict_signature_cannot_do_says_what_to_call(tfs: TfsServer) -> None:
    channel = grpc.insecure_channel(tfs.url)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "affine"
    request.input.example_list.examples.add()
    err = failure(lambda: stub.Classify(request, 10.0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensorflow/serving/classify" in err.details() and "Predict" in err.details()
    err = failure(lambda: stub.MultiInference(inference_pb2.MultiInferenceRequest(), 10.0))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED and "Predict" in err.details()
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    reload = model_management_pb2.ReloadConfigRequest()
    err = failure(lambda: models.HandleReloadConfigRequest(reload, 10.0))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED and "nbd.serve" in err.details()


def test_a_model_still_loading_after_a_restart_is_unavailable_and_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataplane's 503 is gRPC's UNAVAILABLE here too, and GetModelStatus says LOADING."""
    nbd.serve(affine(), name="affine", repository=tmp_path)
    nbd.server.stop(tmp_path)
    monkeypatch.setenv("NBDEPLOY_SLOW_RESTORE_S", "600")  # still loading when we ask
    status = nbd.server.start(tmp_path, http_port=0, grpc_port=0, tfs_grpc_port=0)
    try:
        channel = grpc.insecure_channel(status.tfs_grpc_url)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_request("affine", x=np.ones((1, 3), np.float32))
        err = failure(lambda: stub.Predict(request, 10.0))
        assert err.code() == grpc.StatusCode.UNAVAILABLE and "still loading" in err.details()
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        ask = get_model_status_pb2.GetModelStatusRequest()
        ask.model_spec.name = "affine"
        states = [s.state for s in models.GetModelStatus(ask, 10.0).model_version_status]
        assert states == [get_model_status_pb2.ModelVersionStatus.LOADING]
    finally:
        nbd.server.stop(tmp_path)


# -- guards, status, and the option being off -----------------------------------------------


def test_the_token_is_needed_as_on_the_v2_front_ends(guarded: str) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(guarded))
    request = predict_request("affine", x=np.ones((1, 3), np.float32))
    err = failure(lambda: stub.Predict(request, 10.0))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in err.details()
    metadata = [("authorization", f"Bearer {TOKEN}")]
    response = stub.Predict(request, 10.0, metadata=metadata)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), expected(np.ones((1, 3))))
    models = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(guarded))
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "affine"
    assert failure(lambda: models.GetModelStatus(status, 10.0)).code() == (
        grpc.StatusCode.UNAUTHENTICATED)  # fmt: skip


def test_an_oversize_request_is_refused(guarded: str) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(guarded))
    big = np.ones((LIMIT // 12 + 1000, 3), np.float32)  # just past the limit
    metadata = [("authorization", f"Bearer {TOKEN}")]
    err = failure(lambda: stub.Predict(predict_request("affine", x=big), 10.0, metadata=metadata))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in err.details()
    request = predict_pb2.PredictRequest()  # a few bytes that would unfold past the limit
    request.model_spec.name = "affine"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(1.0, shape=[LIMIT, 3]))
    err = failure(lambda: stub.Predict(request, 10.0, metadata=metadata))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "input 'x'" in err.details() and "max_request_bytes" in err.details()


def test_status_records_the_tfs_url(tfs: TfsServer) -> None:
    status = nbd.server.status(tfs.http.repository)
    assert status.tfs_grpc_url == tfs.url and tfs.url.startswith("127.0.0.1:")
    assert f"{tfs.url} (TF Serving gRPC)" in str(status)
    assert "libtensorflow" in _maps(status.pid)  # the check the next test relies on


def test_a_port_taken_is_a_server_error_naming_it(tfs: TfsServer, tmp_path: Path) -> None:
    import asyncio

    from nbdeploy.server import tfs_grpc
    from nbdeploy.server.dataplane import DataPlane
    from nbdeploy.server.repository import Repository
    from nbdeploy.server.security import Guard

    async def bind() -> None:
        tfs_grpc.build_server(DataPlane(Repository(tmp_path)), Guard(), tfs.url)

    with pytest.raises(ServerError, match=rf"cannot listen on {tfs.url} .* tfs_grpc_port"):
        asyncio.run(bind())


def test_a_server_without_the_option_never_imports_tensorflow(local: Endpoint) -> None:
    status = nbd.server.status(local.repository)
    assert status.tfs_grpc_url == ""
    maps = _maps(status.pid)
    assert "_pywrap_tensorflow" not in maps and "libtensorflow" not in maps
    with pytest.raises(ServerError, match="does not serve TF Serving's gRPC API"):
        nbd.server.start(local.repository, tfs_grpc_port=0)  # not silently without it


def _maps(pid: int) -> str:
    """Every shared library the server loaded: its process's and its workers'."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return "".join(Path(f"/proc/{p}/maps").read_text() for p in [pid, *children])


def without_the_stubs(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter on this nbdeploy, tensorflow_serving unimportable."""
    root = Path(nbd.__file__).resolve().parents[1]
    code = f"import sys; sys.modules['tensorflow_serving'] = None\n{code}"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_without_the_package_the_error_says_what_to_install(tmp_path: Path) -> None:
    """The server (and nbd.server.start before it) as if tensorflow-serving-api were
    not installed."""
    server = without_the_stubs(
        "from nbdeploy.server.process import main\n"
        f"sys.exit(main([{str(tmp_path)!r}, '--http-port=0', '--grpc-port=0', "
        "'--tfs-grpc-port=0']))"
    )
    assert server.returncode == 1
    assert "pip install 'nbdeploy[tfserving]'" in server.stderr
    notebook = without_the_stubs(
        f"import nbdeploy as nbd\ntry:\n    nbd.server.start({str(tmp_path)!r}, tfs_grpc_port=0)\n"
        "except nbd.errors.MissingDependencyError as err:\n    print(err)"
    )
    assert "pip install 'nbdeploy[tfserving]'" in notebook.stdout, notebook.stderr
