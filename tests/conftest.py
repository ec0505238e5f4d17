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
    from nbdeploy.triton import local
    from nbdeploy.triton.model_folder import write_version

    reason = local.unavailable_reason()
    if reason:
        pytest.skip(reason)
    repo = tmp_path_factory.mktemp("triton-repository")
    for name in ("affine", "affine2"):  # this Triton serves ONNX only through its Python backend
        write_version(repo, affine(), name=name, backend="python")
    with local.running(repo) as (http_address, grpc_address):
        yield Endpoint("triton", http_address, grpc_address, repo)
