"""gRPC's wire protocol on our HTTP/2 front end (``nbdeploy.server.grpc_wire``), through
grpcio's and tritonclient's real clients: what the conformance suite does not reach."""

from __future__ import annotations

import gzip

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from nbdeploy.server.grpc_wire import RECYCLE_AFTER
from tests.servers import Endpoint, expected

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def _request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="affine")
    request.inputs.add(name="x", datatype="FP32", shape=list(X.shape))
    request.raw_input_contents.append(X.tobytes())
    return request


def _answer(response: pb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 2)


def test_a_channel_lives_past_each_connections_stream_budget(local: Endpoint) -> None:
    """Connections are recycled (a graceful GOAWAY) before zttp's 4,096-stream cap: a
    client that keeps one channel, sequentially and with calls in flight, never sees it."""
    with grpc.insecure_channel(local.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = _request()
        for _ in range(RECYCLE_AFTER + 300):
            stub.ModelInfer(request)
        in_flight = [stub.ModelInfer.future(request) for _ in range(RECYCLE_AFTER + 300)]
        answers = [future.result() for future in in_flight]
    assert len(answers) == RECYCLE_AFTER + 300
    np.testing.assert_allclose(_answer(answers[-1]), expected(X))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_are_answered(local: Endpoint, algorithm: str) -> None:
    client = grpcclient.InferenceServerClient(local.grpc)
    item = grpcclient.InferInput("x", list(X.shape), "FP32")
    item.set_data_from_numpy(X)
    result = client.infer("affine", [item], compression_algorithm=algorithm)
    np.testing.assert_allclose(result.as_numpy("y"), expected(X))


def test_a_small_compressed_message_that_inflates_past_the_limit_is_refused(
    local: Endpoint,
) -> None:
    """A decompression bomb stops at the request limit: ~70 kB on the wire, 70 MiB inside."""
    request = _request()
    request.raw_input_contents[0] = bytes(70 * 2**20)
    assert len(gzip.compress(request.SerializeToString())) < 2**20
    with grpc.insecure_channel(local.grpc, compression=grpc.Compression.Gzip) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        np.testing.assert_allclose(_answer(stub.ModelInfer(_request())), expected(X))


@pytest.mark.parametrize(
    ("method", "message", "code", "said"),
    [
        ("NoSuchMethod", b"", grpc.StatusCode.UNIMPLEMENTED, "NoSuchMethod"),
        ("ModelInfer", b"\xff\xff\xff\xff", grpc.StatusCode.INTERNAL, "not valid protobuf"),
    ],
)
def test_a_call_the_service_cannot_take_is_a_status_and_the_channel_goes_on(
    local: Endpoint, method: str, message: bytes, code: grpc.StatusCode, said: str
) -> None:
    with grpc.insecure_channel(local.grpc) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as info:
            call(message)
        assert info.value.code() == code and said in (info.value.details() or "")
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        np.testing.assert_allclose(_answer(stub.ModelInfer(_request())), expected(X))
