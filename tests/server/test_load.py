"""A bounded load test on loopback: 20,000 requests at concurrency 16, mixed HTTP-JSON,
HTTP-binary and gRPC, through tritonclient's asyncio clients. Zero errors, every answer
right, and the server's memory does not grow with the request count."""

from __future__ import annotations

import asyncio

import numpy as np
import psutil
import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio

import nbdeploy as nbd
from tests.servers import Endpoint, expected

pytestmark = pytest.mark.slow

CONCURRENCY = 16


async def _traffic(server: Endpoint, total: int) -> int:
    """Send ``total`` requests; returns how many answered correctly."""
    http = httpaio.InferenceServerClient(server.http, conn_limit=CONCURRENCY)
    grpc = grpcaio.InferenceServerClient(server.grpc)
    counter = iter(range(total))
    good = 0

    async def one(i: int) -> np.ndarray:
        x = np.full((1 + i % 4, 3), i % 7, np.float32)
        if i % 3 == 2:
            item = grpcaio.InferInput("x", list(x.shape), "FP32")
            item.set_data_from_numpy(x)
            answer = (await grpc.infer("affine", [item])).as_numpy("y")
        else:
            item = httpaio.InferInput("x", list(x.shape), "FP32")
            item.set_data_from_numpy(x, binary_data=i % 3 == 1)
            wanted = [httpaio.InferRequestedOutput("y", binary_data=i % 3 == 1)]
            answer = (await http.infer("affine", [item], outputs=wanted)).as_numpy("y")
        np.testing.assert_allclose(answer, expected(x), rtol=1e-6)
        return answer

    async def worker() -> None:
        nonlocal good
        for i in counter:
            await one(i)
            good += 1

    try:
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    finally:
        await http.close()
        await grpc.close()
    return good


def test_twenty_thousand_mixed_requests(local: Endpoint) -> None:
    process = psutil.Process(nbd.server.status(local.repository).pid)
    assert asyncio.run(_traffic(local, 2_000)) == 2_000  # warm up: caches, pools, arenas
    before = process.memory_info().rss
    assert asyncio.run(_traffic(local, 20_000)) == 20_000
    growth = process.memory_info().rss - before
    assert growth < 32 * 2**20, f"server RSS grew by {growth / 2**20:.1f} MiB"
