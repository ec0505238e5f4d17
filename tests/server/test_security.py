"""Who may talk to the server: loopback by default, a token before anything else,
Host checks against DNS rebinding, on HTTP and gRPC alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import nbdeploy as nbd
from nbdeploy.server import ServerError
from tests.servers import Endpoint, affine

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    repo = tmp_path_factory.mktemp("guarded")
    status = nbd.server.start(repo, host="0.0.0.0", http_port=0, grpc_port=0, token=TOKEN)
    try:
        nbd.serve(affine(), name="affine", repository=repo)  # the state file carries the token
        yield Endpoint("nbdeploy", status.http_url.removeprefix("http://"), status.grpc_url, repo)
    finally:
        nbd.server.stop(repo)


def test_listening_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        nbd.server.start(tmp_path, host="0.0.0.0", http_port=0, grpc_port=0)


def test_http_needs_the_token_except_for_health(guarded: Endpoint) -> None:
    assert guarded.request("GET", "/v2/health/live")[0] == 200
    status, doc = guarded.request("GET", "/v2/models/affine")
    assert status == 401 and "Bearer" in doc["error"]
    assert guarded.request("GET", "/v2/models/affine", Authorization="Bearer wrong")[0] == 401
    status, doc = guarded.request("GET", "/v2/models/affine", Authorization=f"Bearer {TOKEN}")
    assert status == 200 and doc["name"] == "affine"
    assert guarded.request("POST", "/v2/repository/models/affine/unload")[0] == 401


def test_grpc_needs_the_token(guarded: Endpoint) -> None:
    client = grpcclient.InferenceServerClient(guarded.grpc)
    assert client.is_server_live()
    with pytest.raises(InferenceServerException, match="Bearer"):
        client.get_model_metadata("affine")
    dep = nbd.deployments(guarded.repository)[0]
    x = np.ones((1, 3), np.float32)
    item = grpcclient.InferInput("x", [1, 3], "FP32")
    item.set_data_from_numpy(x)
    assert dep.client("grpc").infer("affine", [item]).as_numpy("y").shape == (1, 2)


def test_foreign_host_headers_are_refused_without_a_token(local: Endpoint) -> None:
    status, doc = local.request("GET", "/v2/models/affine", Host="evil.example:8000")
    assert status == 403 and "Host 'evil.example:8000'" in doc["error"]
    assert local.request("GET", "/v2/models/affine", Host="localhost:1")[0] == 200
    assert local.request("GET", "/v2/models/affine", Host="[::1]:1")[0] == 200


def test_the_state_file_is_private(local: Endpoint) -> None:
    assert (local.repository / "server.json").stat().st_mode & 0o077 == 0


def test_grpc_streams_need_the_token_too(guarded: Endpoint) -> None:
    import queue

    errors: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(guarded.grpc)
    client.start_stream(callback=lambda result, error: errors.put(error))
    try:
        item = grpcclient.InferInput("x", [1, 3], "FP32")
        item.set_data_from_numpy(np.ones((1, 3), np.float32))
        # The refusal can close the stream before this request is even sent.
        with contextlib.suppress(InferenceServerException):
            client.async_stream_infer("affine", [item])
        error = errors.get(timeout=30)
    finally:
        client.stop_stream()
    assert error is not None and "Bearer" in str(error)
