"""Hostile and malformed input, as a careful tester sends it: every case is a 4xx with
``{"error": ...}`` (or a gRPC status other than UNKNOWN), nothing changes on the server or
on disk, and the next good request works."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

import nbdeploy as nbd
from tests.servers import Endpoint, affine, expected, serving_affine

pytestmark = pytest.mark.slow

INFER = "/v2/models/affine/infer"
LOAD = "/v2/repository/models/affine/load"
TRAFFIC = "/v2/repository/models/affine/traffic"
SHM = "/v2/systemsharedmemory"
X = {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
B64 = base64.b64encode(b"x").decode()


def _body(**doc: object) -> str:
    return json.dumps({"inputs": [X], **doc})


def _x(**changes: object) -> str:
    return json.dumps({"inputs": [{**X, **changes}]})


def _load(**params: object) -> str:
    return json.dumps({"parameters": params})


def _config(**fields: object) -> str:
    return json.dumps({"name": "affine", **fields})


# case: (method, path, body, headers, status, message)
HTTP_CASES: dict[str, tuple[str, str, str | bytes, dict[str, str], int, str]] = {
    "datatype a list": ("POST", INFER, _x(datatype=["FP32"]), {}, 400, "unknown datatype"),
    "datatype an object": ("POST", INFER, _x(datatype={"a": 1}), {}, 400, "unknown datatype"),
    "shape of booleans": ("POST", INFER, _x(shape=[True, 3]), {}, 400, "non-negative integers"),
    "outputs a number": ("POST", INFER, _body(outputs=5), {}, 400, "'outputs' must be a list"),
    "an output a number": ("POST", INFER, _body(outputs=[5]), {}, 400, "requested output"),
    "request parameters a string": ("POST", INFER, _body(parameters="binary"), {}, 400,
                                    "the request: 'parameters' must be an object, not a string"),
    "request parameters a list": ("POST", INFER, _body(parameters=[1]), {}, 400,
                                  "'parameters' must be an object, not a list"),
    "input parameters a string": ("POST", INFER, _x(parameters="x"), {}, 400,
                                  "input 'x': 'parameters' must be an object"),
    "output parameters a list": ("POST", INFER, _body(outputs=[{"name": "y", "parameters": [1]}]),
                                 {}, 400, "output 'y': 'parameters' must be an object"),
    "version ² on infer": ("POST", "/v2/models/affine/versions/%C2%B2/infer", _body(), {}, 400,
                           "not a version number"),
    "version ² on metadata": ("GET", "/v2/models/affine/versions/%C2%B2", "", {}, 400,
                              "not a version number"),
    "header length ²": ("POST", INFER, _body(), {"Inference-Header-Content-Length": "\xb2"}, 400,
                        "is not a number"),
    "traffic version not a number": ("POST", TRAFFIC, json.dumps({"traffic": {"abc": 1}}), {},
                                     400, "not a version number"),
    "traffic share a list": ("POST", TRAFFIC, json.dumps({"traffic": {"1": [1]}}), {}, 400,
                             "must be a number"),
    "traffic share 'inf'": ("POST", TRAFFIC, json.dumps({"traffic": {"1": "inf"}}), {}, 400,
                            "must be a number"),
    "traffic share 'nan'": ("POST", TRAFFIC, json.dumps({"traffic": {"1": "nan"}}), {}, 400,
                            "must be a number"),
    "traffic share negative": ("POST", TRAFFIC, json.dumps({"traffic": {"1": -5}}), {}, 400,
                               "finite number >= 0"),
    "traffic action a list": ("POST", TRAFFIC, json.dumps({"action": []}), {}, 400,
                              "'action' must be one of"),
    "load traffic 'nan'": ("POST", LOAD, _load(traffic=json.dumps({"1": "nan"})), {}, 400,
                           "must be a number"),
    "load canary 'nan'": ("POST", LOAD, _load(canary="nan"), {}, 400, "finite number"),
    "load canary 'inf'": ("POST", LOAD, _load(canary="inf"), {}, 400, "finite number"),
    "NUL in an override": ("POST", LOAD, _load(config="{}", **{"file:1/a\0b": B64}), {}, 400,
                           "control character"),
    "override name too long": ("POST", LOAD, _load(config="{}", **{f"file:1/{'x' * 300}": B64}),
                               {}, 400, "too long"),
    "override not text": ("POST", LOAD, _load(config="{}", **{"file:1/model.onnx": 5}), {}, 400,
                          "base64"),
    "model named server.json": ("POST", "/v2/repository/models/server.json/load", _load(), {},
                                400, "invalid model name"),
    "model named server.log": ("POST", "/v2/repository/models/server.log/load", _load(), {}, 400,
                               "invalid model name"),
    "200,000 instances": ("POST", LOAD,
                          _load(config=_config(instance_group=[{"count": 200_000}])), {}, 400,
                          "at most 64"),
    "staged outside the staging area": ("POST", LOAD, _load(staged="../../etc"), {}, 400,
                                        "no staged folder"),
    "version without staged files": ("POST", LOAD, _load(version=3), {}, 400,
                                     "'version' goes with 'staged'"),
    "a JSON body past the JSON limit": ("POST", INFER, b" " * (17 * 2**20), {}, 413,
                                        "JSON tensors is limited to 16777216 bytes"),
    "an unknown trace setting": ("POST", "/v2/trace/setting", json.dumps({"nope": 1}), {}, 400,
                                 "unknown trace setting 'nope'"),
    "a trace level that is not one": ("POST", "/v2/trace/setting",
                                      json.dumps({"trace_level": ["LOUD"]}), {}, 400,
                                      "trace_level must be"),
    "a log file anywhere": ("POST", "/v2/logging", json.dumps({"log_file": "/etc/cron.d/x"}),
                            {}, 400, "log_file cannot be changed"),
    "a shm key outside /dev/shm": ("POST", f"{SHM}/region/r/register",
                                   json.dumps({"key": "../../etc/passwd", "byte_size": 4}), {},
                                   400, "must name a POSIX shared memory segment"),
    "a shm segment that is not there": ("POST", f"{SHM}/region/r/register",
                                        json.dumps({"key": "/nbd-none", "byte_size": 4}), {},
                                        400, "Unable to open shared memory region"),
    "a shm size that is not one": ("POST", f"{SHM}/region/r/register",
                                   json.dumps({"key": "/x", "byte_size": "4"}), {}, 400,
                                   "must be integers"),
    "an unknown shm region": ("GET", f"{SHM}/region/nope/status", "", {}, 404,
                              "Unable to find system shared memory region"),
    "CUDA shared memory": ("POST", "/v2/cudasharedmemory/region/r/register",
                           json.dumps({"raw_handle": {"b64": "AA=="}, "byte_size": 4}), {}, 400,
                           "CUDA shared memory is not supported on this server"),
    "data nested 150 deep": ("POST", INFER, '{"inputs": [{"name": "x", "datatype": "FP32", '
                             '"shape": [1, 3], "data": ' + "[" * 150 + "1" + "]" * 150 + "}]}",
                             {}, 400, "data is not a regular array"),
    "a text/plain POST": ("POST", LOAD, _load(), {"Content-Type": "text/plain"}, 415,
                          "application/json"),
    "a form POST": ("POST", TRAFFIC, "action=promote",
                    {"Content-Type": "application/x-www-form-urlencoded"}, 415, "refused"),
}  # fmt: skip


@pytest.fixture
def unchanged(local: Endpoint) -> Iterator[None]:
    """After the test: the same models, traffic and files, and a good request works."""
    index = local.request("POST", "/v2/repository/index", "{}")[1]
    traffic = local.request("GET", "/v2/models/affine/traffic")[1]
    yield
    assert local.request("POST", "/v2/repository/index", "{}")[1] == index
    assert local.request("GET", "/v2/models/affine/traffic")[1] == traffic
    assert not any((local.repository / ".staging").glob("*"))
    assert sorted(p.name for p in local.repository.iterdir() if p.is_dir()) == [
        ".staging", "affine", "affine2"]  # fmt: skip
    status, doc = local.request("POST", INFER, _body())
    assert status == 200, doc
    assert doc["outputs"][0]["data"] == expected(np.array([[1, 2, 3.0]]))[0].tolist()


@pytest.mark.parametrize("case", HTTP_CASES)
def test_http(local: Endpoint, unchanged: None, case: str) -> None:
    method, path, body, headers, want, message = HTTP_CASES[case]
    status, doc = local.request(method, path, body, **{k.replace("-", "_"): v
                                                       for k, v in headers.items()})  # fmt: skip
    assert status == want, (status, doc)
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    assert re.search(re.escape(message), doc["error"]), doc["error"]


def test_http_version_readiness(local: Endpoint, unchanged: None) -> None:
    assert local.request("GET", "/v2/models/affine/versions/%C2%B2/ready")[0] == 400


def _grpc_load(name: str = "affine", **params: str) -> pb.RepositoryModelLoadRequest:
    request = pb.RepositoryModelLoadRequest(model_name=name)
    for key, value in params.items():
        request.parameters[key].string_param = value
    return request


def _grpc_infer(version: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="affine", model_version=version)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    request.raw_input_contents.append(np.ones((1, 3), np.float32).tobytes())
    return request


def _with_file(path: str) -> pb.RepositoryModelLoadRequest:
    request = _grpc_load(config="{}")
    request.parameters[f"file:{path}"].bytes_param = b"x"
    return request


GRPC_CASES = {
    "version ² on infer": ("ModelInfer", _grpc_infer("²"), "not a version number"),
    "version ² on metadata": ("ModelMetadata", pb.ModelMetadataRequest(name="affine",
                                                                       version="²"),
                              "not a version number"),
    "traffic version not a number": ("RepositoryModelLoad", _grpc_load(traffic='{"abc": 1}'),
                                     "not a version number"),
    "traffic share 'nan'": ("RepositoryModelLoad", _grpc_load(traffic='{"1": "nan"}'),
                            "must be a number"),
    "canary 'nan'": ("RepositoryModelLoad", _grpc_load(canary="nan"), "finite number"),
    "NUL in an override": ("RepositoryModelLoad", _with_file("1/a\0b"), "control character"),
    "override name too long": ("RepositoryModelLoad", _with_file("1/" + "x" * 300), "too long"),
    "model named server.json": ("RepositoryModelLoad", _grpc_load("server.json"),
                                "invalid model name"),
    "200,000 instances": ("RepositoryModelLoad",
                          _grpc_load(config=_config(instance_group=[{"count": 200_000}])),
                          "at most 64"),
    "staged outside the staging area": ("RepositoryModelLoad", _grpc_load(staged="../x"),
                                        "no staged folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", GRPC_CASES)
def test_grpc(local: Endpoint, unchanged: None, case: str) -> None:
    method, request, message = GRPC_CASES[case]
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(local.grpc))
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
    assert message in info.value.details()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Path]:
    """A server of this test's own, for cases that change the repository."""
    with serving_affine(tmp_path) as repo:
        yield repo


def test_a_canary_with_another_signature_is_refused_and_the_stable_one_serves(own: Path) -> None:
    renamed = affine(1)
    renamed.onnx.graph.input[0].name = "z"
    renamed.onnx.graph.node[0].input[0] = "z"
    other = nbd.export(renamed.onnx, name="affine")
    with pytest.raises(nbd.server.ServerError, match=r"different signature.*new name") as info:
        nbd.serve(other, name="affine", canary=10, repository=own)
    assert "inputs: serving x: float32[batch, 3], the new config has z" in str(info.value)
    assert info.value.status == 409
    dep = nbd.deployments(own)[0]
    assert (dep.version, dep.traffic) == (1, {1: 100.0})
    assert not (own / "affine" / "2").exists()
    assert nbd.serve(other, name="affine_z", repository=own).version == 1  # as it says


def test_a_model_folder_linked_out_of_the_repository_is_not_written(
    own: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (own / "linked").symlink_to(outside)
    with pytest.raises(nbd.NbDeployError, match="is a link"):
        nbd.serve(affine(0), name="linked", repository=own)
    assert not any(outside.iterdir())
    assert "is a link" in nbd.server.status(own).damaged[0]["reason"]
