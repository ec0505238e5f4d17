"""Servers for tests: our own as a real subprocess on free loopback ports, and a real
Triton where the nvidia-pytriton wheel runs — each started once per session (the
fixtures live in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import http.client
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import httpx
import numpy as np

import nbdeploy as nbd
from tests import onnx_models

if TYPE_CHECKING:
    from nbdeploy.server.client import LocalServer

W = np.arange(6, dtype=np.float32).reshape(3, 2)  # the weights of onnx_models.affine


def affine(offset: float = 0.0) -> nbd.Artifact:
    """y = x @ W + b + offset: versions with different offsets answer differently."""
    model = onnx_models.affine()
    bias = model.graph.initializer[1]
    values = np.frombuffer(bias.raw_data, np.float32) + np.float32(offset)
    bias.raw_data = values.astype(np.float32).tobytes()
    return nbd.export(model, name="affine")


def expected(x: np.ndarray, offset: float = 0.0) -> np.ndarray:
    return x @ W + np.array([0.5, -1.0], np.float32) + np.float32(offset)


@dataclass(frozen=True)
class Endpoint:
    """A server under test: where it listens and which model it serves as ``affine``."""

    kind: str
    http: str  # host:port
    grpc: str
    repository: Path

    def request(
        self, method: str, path: str, body: bytes | str | None = None, **headers: str
    ) -> tuple[int, Any]:
        """A raw HTTP call; returns the status and the decoded JSON body (or raw bytes)."""
        host, port = self.http.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request(method, path, body=body, headers={k.replace("_", "-"): v
                                                          for k, v in headers.items()})  # fmt: skip
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw


class InProcess(httpx.BaseTransport):
    """An httpx transport that calls an ASGI app in this process (httpx's own
    ASGITransport) on one event loop of its own thread, so the app's background tasks
    live across requests, as in the server."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app)
        self._portal_context = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_context.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._portal.call(self._send, request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        request = httpx.Request(request.method, request.url, headers=request.headers,
                                content=request.read())  # fmt: skip
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        self._portal_context.__exit__(None, None, None)


@contextlib.contextmanager
def serving_affine(repo: Path) -> Iterator[Path]:
    """Our server on ``repo`` (free ports) with ``affine`` v1 served; stopped after."""
    nbd.server.start(repo, http_port=0, grpc_port=0)
    try:
        nbd.serve(affine(0), name="affine", repository=repo)
        yield repo
    finally:
        nbd.server.stop(repo)


@contextlib.contextmanager
def in_process_api(repository: Path) -> Iterator[LocalServer]:
    """The typed client over the server's app run in this process (no socket, no
    subprocess), on ``repository``."""
    from nbdeploy.server.client import LocalServer
    from nbdeploy.server.dataplane import DataPlane
    from nbdeploy.server.http_api import build_app
    from nbdeploy.server.repository import Repository
    from nbdeploy.server.security import Guard

    app = build_app(DataPlane(Repository(repository)), Guard())
    with LocalServer("http://127.0.0.1", transport=InProcess(app)) as client:
        yield client


def stage(repository: Path, art: nbd.Artifact) -> str:
    """``art`` saved into a fresh folder of the repository's staging area, as nbd.serve
    stages a version; the folder's name (what a load's ``staged`` takes)."""
    from nbdeploy.server.layout import STAGING

    (repository / STAGING).mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=repository / STAGING))
    art.save(folder / "model.onnx")
    return folder.name
