from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import nbdeploy as nbd
from tests.servers import Endpoint, affine

pytest_plugins = ["pytest_jupyter.jupyter_server"]  # jp_fetch, for the server extension


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """Our server, with ``affine`` v1 (offset 0) and ``affine2`` v1 served."""
    repo = tmp_path_factory.mktemp("repository")
    status = nbd.server.start(repo, http_port=0, grpc_port=0)
    try:
        nbd.serve(affine(), name="affine", repository=repo)
        nbd.serve(affine(), name="affine2", repository=repo)
        yield Endpoint("nbdeploy", status.http_url.removeprefix("http://"), status.grpc_url, repo)
    finally:
        nbd.server.stop(repo)


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A real Triton (nvidia-pytriton's tritonserver) serving the same ``affine`` models."""
    from tests.triton import harness as real_triton

    reason = real_triton.unavailable_reason()
    if reason:
        pytest.skip(reason)
    repo = tmp_path_factory.mktemp("triton-repository")
    for name in ("affine", "affine2"):
        real_triton.write_onnx_python_model(repo, name, affine())
    with real_triton.running(repo) as (http_address, grpc_address):
        yield Endpoint("triton", http_address, grpc_address, repo)
