"""Behaviours shared with Triton, checked through the real tritonclient (HTTP, gRPC and
their asyncio variants). Runs against our server, and against a real Triton where the
nvidia-pytriton wheel can run (see tests/triton.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

import nbdeploy as nbd
from nbdeploy.server import config as cfg
from tests.servers import Endpoint, affine, expected

pytestmark = pytest.mark.slow

X = np.arange(12, dtype=np.float32).reshape(4, 3) / 3


@pytest.fixture(scope="module", params=["nbdeploy", "triton"])
def server(request: pytest.FixtureRequest) -> Endpoint:
    endpoint: Endpoint = request.getfixturevalue("local" if request.param == "nbdeploy"
                                                 else "triton")  # fmt: skip
    return endpoint


_OPEN: list[httpclient.InferenceServerClient] = []


@pytest.fixture(autouse=True)
def _close_http_clients() -> Iterator[None]:
    """tritonclient's HTTP clients hold gevent sockets until closed: closed here, in the
    test's thread, their ResourceWarning cannot surface in a later test's check for
    unraisable exceptions (which once failed an unrelated test)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _http(server: Endpoint) -> httpclient.InferenceServerClient:
    """An HTTP client for ``server``, closed when the test ends."""
    client = httpclient.InferenceServerClient(server.http)
    _OPEN.append(client)
    return client


def _http_input(x: np.ndarray, binary: bool) -> httpclient.InferInput:
    item = httpclient.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=binary)
    return item


def test_health_and_server_metadata(server: Endpoint) -> None:
    client = _http(server)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    g = grpcclient.InferenceServerClient(server.grpc)
    assert g.is_server_live() and g.is_server_ready()
    assert "model_repository" in g.get_server_metadata().extensions


def test_model_metadata_config_and_readiness(server: Endpoint) -> None:
    client = _http(server)
    assert client.is_model_ready("affine") and client.is_model_ready("affine", "1")
    assert not client.is_model_ready("affine", "99")
    meta = client.get_model_metadata("affine")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    config = client.get_model_config("affine")
    assert config["max_batch_size"] > 0 and config["input"][0]["dims"] == [3]
    g = grpcclient.InferenceServerClient(server.grpc)
    assert g.get_model_metadata("affine", "1").inputs[0].shape == [-1, 3]
    assert g.get_model_config("affine").config.input[0].dims == [3]


@pytest.mark.parametrize("binary", [False, True])
def test_http_infer_json_and_binary(server: Endpoint, binary: bool) -> None:
    client = _http(server)
    wanted = [httpclient.InferRequestedOutput("y", binary_data=binary)]
    result = client.infer("affine", [_http_input(X, binary)], outputs=wanted, request_id="r7")
    np.testing.assert_allclose(result.as_numpy("y"), expected(X), rtol=1e-6)
    response = result.get_response()
    assert response["model_version"] == "1" and response["id"] == "r7"
    versioned = client.infer("affine", [_http_input(X, binary)], model_version="1")
    np.testing.assert_allclose(versioned.as_numpy("y"), expected(X), rtol=1e-6)


def test_grpc_infer(server: Endpoint) -> None:
    client = grpcclient.InferenceServerClient(server.grpc)
    item = grpcclient.InferInput("x", list(X.shape), "FP32")
    item.set_data_from_numpy(X)
    result = client.infer("affine", [item], outputs=[grpcclient.InferRequestedOutput("y")])
    np.testing.assert_allclose(result.as_numpy("y"), expected(X), rtol=1e-6)
    assert result.get_response().model_version == "1"


def test_asyncio_clients(server: Endpoint) -> None:
    async def both() -> tuple[np.ndarray, np.ndarray]:
        h = httpaio.InferenceServerClient(server.http)
        g = grpcaio.InferenceServerClient(server.grpc)
        try:
            item = grpcaio.InferInput("x", list(X.shape), "FP32")
            item.set_data_from_numpy(X)
            a, b = await asyncio.gather(
                h.infer("affine", [_http_input(X, True)]), g.infer("affine", [item])
            )
            return a.as_numpy("y"), b.as_numpy("y")
        finally:
            await h.close()
            await g.close()

    for answer in asyncio.run(both()):
        np.testing.assert_allclose(answer, expected(X), rtol=1e-6)


def test_statistics_count_requests(server: Endpoint) -> None:
    client = _http(server)
    before = client.get_inference_statistics("affine")["model_stats"][0]
    client.infer("affine", [_http_input(X, True)])
    after = client.get_inference_statistics("affine")["model_stats"][0]
    success = after["inference_stats"]["success"]["count"]
    assert success == before["inference_stats"]["success"]["count"] + 1
    g = grpcclient.InferenceServerClient(server.grpc)
    assert g.get_inference_statistics("affine").model_stats[0].inference_count >= 4


def test_unknown_model_and_version_are_client_errors(server: Endpoint) -> None:
    client = _http(server)
    with pytest.raises(InferenceServerException, match="nope"):
        client.infer("nope", [_http_input(X, True)])
    with pytest.raises(InferenceServerException):
        client.infer("affine", [_http_input(X, True)], model_version="99")
    status, body = server.request("POST", "/v2/models/nope/infer", b"{}")
    assert 400 <= status < 500 and "error" in body
    g = grpcclient.InferenceServerClient(server.grpc)
    with pytest.raises(InferenceServerException, match="nope"):
        item = grpcclient.InferInput("x", list(X.shape), "FP32")
        item.set_data_from_numpy(X)
        g.infer("nope", [item])


def test_wrong_shape_is_a_client_error(server: Endpoint) -> None:
    client = _http(server)
    bad = np.zeros((2, 5), np.float32)
    with pytest.raises(InferenceServerException) as info:
        client.infer("affine", [_http_input(bad, True)])
    assert info.value.status() == "400"
    np.testing.assert_allclose(  # and the next good request still works
        client.infer("affine", [_http_input(X, True)]).as_numpy("y"), expected(X), rtol=1e-6
    )


def test_repository_index_unload_and_load(server: Endpoint) -> None:
    for client in (_http(server),
                   grpcclient.InferenceServerClient(server.grpc)):  # fmt: skip
        client.unload_model("affine2")
        index = client.get_model_repository_index()
        rows = index if isinstance(index, list) else [
            {"name": m.name, "state": m.state} for m in index.models
        ]  # fmt: skip
        assert any(r["name"] == "affine2" and r.get("state") != "READY" for r in rows)
        assert not client.is_model_ready("affine2")
        client.load_model("affine2")
        assert client.is_model_ready("affine2")


def test_grpc_streaming_infer(server: Endpoint) -> None:
    import queue

    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(3):
            x = X[: i + 1]
            item = grpcclient.InferInput("x", list(x.shape), "FP32")
            item.set_data_from_numpy(x)
            client.async_stream_infer("affine", [item], request_id=f"s{i}")
        bad = grpcclient.InferInput("x", [1, 5], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 5), np.float32))
        client.async_stream_infer("affine", [bad], request_id="bad")
        got = [answers.get(timeout=30) for _ in range(4)]
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(got[:3]):
        assert error is None and result.get_response().id == f"s{i}"
        np.testing.assert_allclose(result.as_numpy("y"), expected(X[: i + 1]), rtol=1e-6)
    assert got[3][1] is not None  # the bad request is answered with an error, in order


# Message prefixes Triton's clients and tests match on; each server may add its own tail.
PREFIXES = {
    "unknown model": ("/v2/models/nope/infer", {"inputs": [{"name": "x", "datatype": "FP32",
                      "shape": [1, 3], "data": [1, 2, 3]}]},
                      "Request for unknown model: 'nope' is not found"),
    "unknown version": ("/v2/models/affine/versions/9/infer", {"inputs": [{"name": "x",
                        "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
                        "Request for unknown model: 'affine' version 9 is not found"),
    "datatype": ("/v2/models/affine/infer", {"inputs": [{"name": "x", "datatype": "INT64",
                 "shape": [1, 3], "data": [1, 2, 3]}]},
                 "inference input 'x' data-type is 'INT64', but model 'affine' expects 'FP32'"),
    "shape": ("/v2/models/affine/infer", {"inputs": [{"name": "x", "datatype": "FP32",
              "shape": [3, 1], "data": [1, 2, 3]}]},
              "unexpected shape for input 'x' for model 'affine'. Expected [-1,3], got [3,1]"),
    "unknown input": ("/v2/models/affine/infer", {"inputs": [{"name": "z", "datatype": "FP32",
                      "shape": [1, 3], "data": [1, 2, 3]}]},
                      "unexpected inference input 'z' for model 'affine'"),
    "unknown output": ("/v2/models/affine/infer", {"inputs": [{"name": "x", "datatype": "FP32",
                       "shape": [1, 3], "data": [1, 2, 3]}], "outputs": [{"name": "q"}]},
                       "unexpected inference output 'q' for model 'affine'"),
    "bytes not strings": ("/v2/models/affine/infer", {"inputs": [{"name": "x",
                          "datatype": "BYTES", "shape": [1], "data": [{"a": 1}]}]},
                          "Unable to parse JSON bytes array"),
}  # fmt: skip


@pytest.mark.parametrize("case", PREFIXES)
def test_error_messages_start_as_tritons(server: Endpoint, case: str) -> None:
    import json

    path, body, prefix = PREFIXES[case]
    status, doc = server.request("POST", path, json.dumps(body))
    assert doc["error"].removeprefix("[request id: <id_unknown>] ").startswith(prefix), doc
    assert 400 <= status < 500 or (server.kind == "triton" and status == 500)


def test_the_config_as_json_has_every_field(server: Endpoint) -> None:
    config = _http(server).get_model_config("affine")
    assert config["max_batch_size"] == 128 and config["input"][0]["dims"] == [3]
    assert config["input"][0]["format"] == "FORMAT_NONE"
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["instance_group"][0]["name"] == "affine_0"
    assert config["output"][0]["label_filename"] == ""
    grpc_config = grpcclient.InferenceServerClient(server.grpc).get_model_config("affine")
    assert grpc_config.config.max_batch_size == 128


def _reshaped_model(server: Endpoint) -> None:
    """'reshaped': y = 2x on a [1, 6] model, whose config puts x on the wire as [6] and y
    as [2, 3] (Triton's reshape, as image_client.py's models use it)."""
    import json

    from onnx import TensorProto, helper

    from nbdeploy.triton.model_folder import version_files

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "reshaped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
    )  # fmt: skip
    art = nbd.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                     name="reshaped")  # fmt: skip
    backend = "python" if server.kind == "triton" else "onnxruntime"
    config = {
        "name": "reshaped", "max_batch_size": 0,
        **({"backend": "python"} if backend == "python" else {"platform": "onnxruntime_onnx"}),
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [6],
                   "reshape": {"shape": [1, 6]}}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [2, 3],
                    "reshape": {"shape": [1, 6]}}],
    }  # fmt: skip
    files = {f"file:{k}": v for k, v in version_files(art, 1, backend).items()}
    _http(server).load_model("reshaped", config=json.dumps(config), files=files)


def test_reshape_between_the_wire_and_the_model(server: Endpoint) -> None:
    _reshaped_model(server)
    x = np.arange(6, dtype=np.float32)
    client = _http(server)
    metadata = client.get_model_metadata("reshaped")
    assert [i["shape"] for i in metadata["inputs"]] == [[6]]
    assert [o["shape"] for o in metadata["outputs"]] == [[2, 3]]
    item = httpclient.InferInput("x", [6], "FP32")
    item.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("reshaped", [item]).as_numpy("y"),
                                  (2 * x).reshape(2, 3))  # fmt: skip
    g = grpcclient.InferenceServerClient(server.grpc)
    grpc_item = grpcclient.InferInput("x", [6], "FP32")
    grpc_item.set_data_from_numpy(x)
    assert g.infer("reshaped", [grpc_item]).as_numpy("y").shape == (2, 3)


def _labelled_model(server: Endpoint) -> None:
    """'labelled': affine with labels.txt beside its config, loaded through the repository
    API on either server (the Python backend on the wheel's Triton)."""
    import json

    from nbdeploy.triton.model_folder import triton_config, version_files

    art = affine()
    backend = "python" if server.kind == "triton" else "onnxruntime"
    config = cfg.to_json(triton_config(art, "labelled", backend), defaults=False)
    config["output"][0]["label_filename"] = "labels.txt"
    files = {f"file:{k}": v for k, v in version_files(art, 1, backend).items()}
    files["file:labels.txt"] = b"cat\ndog\n"
    _http(server).load_model("labelled", config=json.dumps(config), files=files)


def test_classification(server: Endpoint) -> None:
    _labelled_model(server)
    x = np.array([[1, 2, 3], [-3, -2, -1]], np.float32)  # y = [[16.5, 21], [-7.5, -15]]
    client = _http(server)
    for binary in (True, False):
        wanted = [httpclient.InferRequestedOutput("y", binary_data=binary, class_count=2)]
        got = client.infer("labelled", [_http_input(x, binary)], outputs=wanted).as_numpy("y")
        assert [[v if isinstance(v, str) else v.decode() for v in row] for row in got] == [
            ["21.000000:1:dog", "16.500000:0:cat"],
            ["-7.500000:0:cat", "-15.000000:1:dog"],
        ]
    g = grpcclient.InferenceServerClient(server.grpc)
    item = grpcclient.InferInput("x", [2, 3], "FP32")
    item.set_data_from_numpy(x)
    top = g.infer("labelled", [item], outputs=[grpcclient.InferRequestedOutput("y", class_count=5)])
    assert top.as_numpy("y").shape == (2, 2)  # at most as many classes as there are
    plain = client.infer(
        "affine",
        [_http_input(x, True)],
        outputs=[httpclient.InferRequestedOutput("y", class_count=1)],
    )
    assert plain.as_numpy("y").tolist() == [[b"21.000000:1"], [b"-7.500000:0"]]  # no labels


def test_raw_binary_requests(server: Endpoint) -> None:
    """Inference-Header-Content-Length: 0 — the body is the one input's bytes."""
    x = np.array([1, 2, 3], np.float32)
    status, body = server.request("POST", "/v2/models/affine/infer", x.tobytes(),
                                  Inference_Header_Content_Length="0")  # fmt: skip
    assert status == 200
    header_length = body.index(b"}]}") + 3  # the JSON header, then the output's bytes
    header = __import__("json").loads(body[:header_length])
    assert header["outputs"][0]["shape"] == [1, 2]
    np.testing.assert_allclose(np.frombuffer(body[header_length:], np.float32),
                               expected(x[None])[0])  # fmt: skip
    status, doc = server.request("POST", "/v2/models/affine/infer", x[:1].tobytes(),
                                 Inference_Header_Content_Length="0")  # fmt: skip
    assert 400 <= status < 500 and "input byte size mismatch for input" in doc["error"]


def _slow_model(server: Endpoint) -> None:
    """'slow': 24 chained 512x512 MatMuls on a [1, 64, 512] input (~0.1 s a run), one
    instance, and a queue that holds one request (Triton's default_queue_policy)."""
    import json

    from onnx import TensorProto, helper, numpy_helper

    from nbdeploy.triton.model_folder import triton_config, version_files

    weight = numpy_helper.from_array(np.eye(512, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", [f"h{i}" if i else "x", "w"], [f"h{i + 1}"])
             for i in range(24)] + [helper.make_node("Identity", ["h24"], ["y"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64, 512])], [weight],
    )  # fmt: skip
    art = nbd.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                     name="slow")  # fmt: skip
    backend = "python" if server.kind == "triton" else "onnxruntime"
    config = cfg.to_json(triton_config(art, "slow", backend, max_batch_size=1), defaults=False)
    config["dynamic_batching"] = {"default_queue_policy": {"max_queue_size": 1}}
    files = {f"file:{k}": v for k, v in version_files(art, 1, backend).items()}
    _http(server).load_model("slow", config=json.dumps(config), files=files)


def test_a_full_queue_is_refused_with_tritons_status(server: Endpoint) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _slow_model(server)
    x = np.ones((1, 64, 512), np.float32)

    def one(_: int) -> str:
        client = httpclient.InferenceServerClient(server.http)
        try:
            client.infer("slow", [_http_input(x, True)])
        except InferenceServerException as err:
            return f"{err.status()} {err.message()}"
        finally:  # in this thread: gevent's pool cannot be closed from another one
            client.close()
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(8)))
    refused = [o for o in outcomes if o != "ok"]
    assert "ok" in outcomes and refused, outcomes
    assert all(o.startswith("503") and "Exceeds maximum queue size" in o for o in refused), refused


def test_trace_and_log_settings_in_tritons_shapes(server: Endpoint) -> None:
    client = _http(server)
    trace = client.get_trace_settings()
    assert {"trace_level", "trace_rate", "trace_count", "log_frequency", "trace_mode"} <= set(trace)
    assert client.update_trace_settings("affine", {"trace_rate": "7"})["trace_rate"] == "7"
    assert client.get_trace_settings()["trace_rate"] == trace["trace_rate"]  # global unchanged
    assert client.update_trace_settings("affine", {"trace_rate": None})["trace_rate"] == (
        trace["trace_rate"])  # fmt: skip
    logs = client.get_log_settings()
    assert {"log_info", "log_warning", "log_error", "log_verbose_level", "log_format"} <= set(logs)
    assert client.update_log_settings({"log_verbose_level": 1})["log_verbose_level"] == 1
    assert client.update_log_settings({"log_verbose_level": 0})["log_verbose_level"] == 0
    g = grpcclient.InferenceServerClient(server.grpc)
    assert g.get_trace_settings(as_json=True)["settings"]["trace_rate"]["value"] == [
        trace["trace_rate"]]  # fmt: skip
    assert "log_info" in g.get_log_settings(as_json=True)["settings"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_system_shared_memory(server: Endpoint, protocol: str) -> None:
    """tritonclient's own shared memory utilities: inputs read from, and outputs written
    into, POSIX shared memory regions the client registered."""
    import tritonclient.utils.shared_memory as shm

    module: Any = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(server.http if protocol == "http" else server.grpc)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    tag = f"{server.kind}-{protocol}"
    inputs = shm.create_shared_memory_region(f"in-{tag}", f"/nbd-in-{tag}", x.nbytes)
    outputs = shm.create_shared_memory_region(f"out-{tag}", f"/nbd-out-{tag}", 64)
    try:
        shm.set_shared_memory_region(inputs, [x])
        client.unregister_system_shared_memory()
        client.register_system_shared_memory(f"in-{tag}", f"/nbd-in-{tag}", x.nbytes)
        client.register_system_shared_memory(f"out-{tag}", f"/nbd-out-{tag}", 64)
        status = client.get_system_shared_memory_status(**({} if protocol == "http" else
                                                           {"as_json": True}))  # fmt: skip
        assert f"out-{tag}" in str(status)
        item = module.InferInput("x", [2, 3], "FP32")
        item.set_shared_memory(f"in-{tag}", x.nbytes)
        wanted = module.InferRequestedOutput("y")
        wanted.set_shared_memory(f"out-{tag}", 56, offset=8)
        result = client.infer("affine", [item], outputs=[wanted])
        got = shm.get_contents_as_numpy(outputs, np.float32, [2, 2], offset=8)
        np.testing.assert_allclose(got, expected(x), rtol=1e-6)
        assert result.get_output("y") is not None
        too_small = module.InferRequestedOutput("y")
        too_small.set_shared_memory(f"out-{tag}", 8)
        with pytest.raises(InferenceServerException):
            client.infer("affine", [item], outputs=[too_small])
        missing = module.InferInput("x", [2, 3], "FP32")
        missing.set_shared_memory("nowhere", x.nbytes)
        with pytest.raises(InferenceServerException, match="Unable to find"):
            client.infer("affine", [missing])
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(inputs)
        shm.destroy_shared_memory_region(outputs)
    assert "out-" not in str(client.get_system_shared_memory_status())
