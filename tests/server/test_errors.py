"""Every bad input is a 4xx with {"error": "..."} naming what is wrong (or the matching
gRPC status), and the next good request still works."""

from __future__ import annotations

import base64
import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.servers import Endpoint, expected

pytestmark = pytest.mark.slow

GOOD = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                               "data": [1, 2, 3]}]})  # fmt: skip


def _infer(inputs: list[dict[str, object]]) -> str:
    return json.dumps({"inputs": inputs})


def _x(**changes: object) -> dict[str, object]:
    return {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3], **changes}


BAD_INFER = {
    "malformed JSON": ("{not json", "not valid JSON"),
    "JSON not an object": ("[1, 2]", "must be a JSON object"),
    "no inputs": ("{}", "non-empty 'inputs'"),
    "unknown datatype": (_infer([_x(datatype="FP99")]), "unknown datatype 'FP99'"),
    "wrong datatype": (_infer([_x(datatype="INT64")]),
                       "inference input 'x' data-type is 'INT64', but model 'affine' expects"),
    "wrong shape": (_infer([_x(shape=[3, 1])]),
                    r"unexpected shape for input 'x' for model 'affine'\. Expected \[-1,3\], got "),
    "data/shape mismatch": (_infer([_x(shape=[2, 3])]), "needs 6 values, got 3"),
    "non-numeric data": (_infer([_x(data=["a", "b", "c"])]), "data is not FP32"),
    "missing input": (_infer([_x(name="z")]), "unexpected inference input 'z' for model 'affine'"),
    "unknown input": (_infer([_x(), _x(name="z")]), "unexpected inference input 'z'"),
    "input twice": (_infer([_x(), _x()]), "given twice"),
    "negative dim": (_infer([_x(shape=[-1, 3])]), "non-negative integers"),
    "batch too large": (_infer([_x(shape=[1000, 3], data=[0.0] * 3000)]), "batch size 1000"),
    "unknown output": (json.dumps({"inputs": [_x()], "outputs": [{"name": "q"}]}),
                       "unexpected inference output 'q' for model 'affine'"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INFER)
def test_bad_infer_bodies(local: Endpoint, case: str) -> None:
    body, message = BAD_INFER[case]
    status, doc = local.request("POST", "/v2/models/affine/infer", body)
    assert status == 400, (status, doc)
    assert set(doc) == {"error"}
    assert __import__("re").search(message, doc["error"]), doc["error"]
    status, doc = local.request("POST", "/v2/models/affine/infer", GOOD)
    assert (
        status == 200 and doc["outputs"][0]["data"] == expected(np.array([[1, 2, 3.0]]))[0].tolist()
    )


def _binary(header: dict[str, object], blob: bytes, length: int | None = None) -> tuple[bytes, str]:
    raw = json.dumps(header).encode()
    return raw + blob, str(len(raw) if length is None else length)


def test_binary_sizes_that_do_not_add_up(local: Endpoint) -> None:
    x = np.ones((1, 3), np.float32).tobytes()

    def sized(size: int, blob: bytes, length: int | None = None) -> tuple[bytes, str]:
        return _binary({"inputs": [_x(parameters={"binary_data_size": size})]}, blob, length)

    cases = {
        "goes past the end": sized(24, x),
        "input byte size mismatch for input 'x'. Expected 12, got 8": sized(8, x[:8]),
        "not claimed by any input": sized(12, x + b"xx"),
        "but the body has": sized(12, x, 10_000),
    }
    for message, (body, length) in cases.items():
        status, doc = local.request("POST", "/v2/models/affine/infer", body,
                                    Inference_Header_Content_Length=length)  # fmt: skip
        assert status == 400 and message in doc["error"], (message, doc)
    status, doc = local.request("POST", "/v2/models/affine/infer", b"{}",
                                Inference_Header_Content_Length="abc")  # fmt: skip
    assert status == 400 and "not a number" in doc["error"]


def test_unknown_model_version_and_route(local: Endpoint) -> None:
    for path, message in [("/v2/models/nope/infer", "unknown model: 'nope' is not found"),
                          ("/v2/models/affine/versions/9/infer",
                           "unknown model: 'affine' version 9 is not found"),
                          ("/v2/nothing/here", "no such endpoint")]:  # fmt: skip
        status, doc = local.request("POST", path, GOOD)
        assert status == 404 and message in doc["error"], doc
    status, doc = local.request("GET", "/v2/models/affine/infer")
    assert status == 405 and "Method Not Allowed" in doc["error"]


def test_oversized_body_is_refused_before_it_is_read(local: Endpoint) -> None:
    status, doc = local.request("POST", "/v2/models/affine/infer", b"",
                                Content_Length=str(2**40))  # fmt: skip
    assert status == 413 and "limit" in doc["error"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"config": "{bad"}, "not valid"),
        ({"config": json.dumps({"name": "other"})}, "names model 'other'"),
        ({"config": "{}", "file:../x": base64.b64encode(b"x").decode()}, "inside the model"),
        ({"config": "{}", "file:1/model.onnx": "***"}, "base64"),
        ({"file:1/model.onnx": base64.b64encode(b"x").decode()}, "need a 'config'"),
        ({"config": "{}", "file:7/model.onnx": base64.b64encode(b"junk").decode()},
         "failed to load 'affine' version 7"),
        ({"traffic": json.dumps({"42": 100})}, "not in the repository"),
        ({"canary": "lots"}, "'canary' must be a number"),
        ({"traffic": "[1, 2]"}, "'traffic' must map versions to shares"),
    ],
)  # fmt: skip
def test_bad_repository_loads_leave_the_model_serving(
    local: Endpoint, parameters: dict[str, str], message: str
) -> None:
    body = json.dumps({"parameters": parameters})
    status, doc = local.request("POST", "/v2/repository/models/affine/load", body)
    assert status == 400 and message in doc["error"], doc
    assert not (local.repository / "affine" / "7").exists()
    status, doc = local.request("POST", "/v2/models/affine/infer", GOOD)
    assert status == 200 and doc["model_version"] == "1"


def test_bad_model_names_in_repository_calls(local: Endpoint) -> None:
    status, doc = local.request("POST", "/v2/repository/models/..%2F..%2Fetc/load", "{}")
    assert status in (400, 404) and "error" in doc
    status, doc = local.request("POST", "/v2/repository/models/a..b/load", "{}")
    assert status == 400 and "invalid model name" in doc["error"]


def test_grpc_status_codes(local: Endpoint) -> None:
    channel = grpc.insecure_channel(local.grpc)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    def code(request: pb.ModelInferRequest) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        return info.value.code()

    x = np.ones((1, 3), np.float32)
    good = pb.ModelInferRequest(model_name="affine")
    good.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    good.raw_input_contents.append(x.tobytes())
    unknown = pb.ModelInferRequest()
    unknown.CopyFrom(good)
    unknown.model_name = "nope"
    short = pb.ModelInferRequest()
    short.CopyFrom(good)
    short.raw_input_contents[0] = b"12"
    assert code(unknown) == grpc.StatusCode.NOT_FOUND
    assert code(short) == grpc.StatusCode.INVALID_ARGUMENT
    huge = pb.ModelInferRequest()
    huge.CopyFrom(good)
    huge.raw_input_contents[0] = b"\0" * (65 * 2**20)
    assert code(huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
    answer = stub.ModelInfer(good)
    np.testing.assert_allclose(np.frombuffer(answer.raw_output_contents[0], np.float32),
                               expected(x).ravel())  # fmt: skip
    bad_load = pb.RepositoryModelLoadRequest(model_name="affine")
    bad_load.parameters["canary"].string_param = "lots"
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(bad_load)
    assert (
        info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "canary" in info.value.details()
    )
    typed = pb.ModelInferRequest(model_name="affine")
    typed.inputs.add(name="x", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend(
        [1, 1, 1]
    )
    assert stub.ModelInfer(typed).outputs[0].shape == [1, 2]
    client = grpcclient.InferenceServerClient(local.grpc)
    assert client.is_server_live()


def test_duplicate_outputs_and_methods_a_route_does_not_take(local: Endpoint) -> None:
    twice = json.dumps({"inputs": [_x()], "outputs": [{"name": "y"}, {"name": "y"}]})
    status, doc = local.request("POST", "/v2/models/affine/infer", twice)
    assert status == 400 and "duplicate output name 'y'" in doc["error"]
    host, port = local.http.rsplit(":", 1)
    import http.client

    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("PUT", "/v2/models/affine/infer", body=b"{}")
    response = conn.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "POST"
    conn.close()
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(local.grpc))
    request = pb.ModelInferRequest(model_name="affine")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    request.raw_input_contents.append(np.ones((1, 3), np.float32).tobytes())
    request.outputs.add(name="y")
    request.outputs.add(name="y")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_server_metadata_lists_exactly_the_extensions_implemented(local: Endpoint) -> None:
    status, doc = local.request("GET", "/v2")
    assert status == 200 and doc["name"] == "nbdeploy"  # not Triton, and says so
    assert set(doc["extensions"]) == {
        "classification", "model_repository", "schedule_policy", "model_configuration",
        "binary_tensor_data", "statistics", "trace", "logging", "system_shared_memory",
        "nbdeploy_traffic", "nbdeploy_overview"}  # fmt: skip
