"""A soak of the local server: 20,000 requests at concurrency 16, mixed HTTP-JSON,
HTTP-binary and gRPC through tritonclient's asyncio clients, while a canary version is
served a quarter of the way in and promoted past the half.

What it shows: errors (must be 0), answers that match neither version (must be 0), how
the requests split across the versions, latency and throughput under that load, and
the server's memory before and after, all its worker processes together (it must not
grow with the request count). The server runs its default number of workers.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio

import nbdeploy as nbd
from benchmarks import _report
from tests.servers import affine, expected  # y = x @ W + b + offset: versions differ

TOTAL, WARMUP, CONCURRENCY = 20_000, 2_000, 16
CANARY_AT, PROMOTE_AT = 5_000, 12_000


def _rss(server: psutil.Process) -> int:
    """The server's resident memory: its process and its worker processes."""
    return sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])


class Soak:
    """Sends the requests and keeps the tallies."""

    def __init__(self, status: nbd.server.ServerStatus, repo: Path) -> None:
        self.status, self.repo = status, repo
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self.wrong = 0
        self.latencies_ms: list[float] = []

    async def run(self, total: int, *, with_rollout: bool) -> float:
        """Seconds taken for ``total`` requests (plus the rollout, if asked)."""
        http = httpaio.InferenceServerClient(self.status.http_url.removeprefix("http://"),
                                             conn_limit=CONCURRENCY)  # fmt: skip
        grpc = grpcaio.InferenceServerClient(self.status.grpc_url)
        counter = iter(range(total))
        started = time.perf_counter()

        async def worker() -> None:
            for i in counter:
                if with_rollout and i in (CANARY_AT, PROMOTE_AT):
                    await asyncio.to_thread(self._rollout, i)
                await self._one(http, grpc, i)

        try:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        finally:
            await http.close()
            await grpc.close()
        return time.perf_counter() - started

    def _rollout(self, i: int) -> None:
        if i == CANARY_AT:
            nbd.serve(affine(1.0), name="affine", canary=20, repository=self.repo)
        else:
            nbd.deployments(self.repo)[0].promote()

    async def _one(self, http: Any, grpc: Any, i: int) -> None:
        x = np.full((1 + i % 4, 3), i % 7, np.float32)
        began = time.perf_counter()
        try:
            if i % 3 == 2:
                item = grpcaio.InferInput("x", list(x.shape), "FP32")
                item.set_data_from_numpy(x)
                result = await grpc.infer("affine", [item])
                version = result.get_response().model_version
            else:
                item = httpaio.InferInput("x", list(x.shape), "FP32")
                item.set_data_from_numpy(x, binary_data=i % 3 == 1)
                wanted = [httpaio.InferRequestedOutput("y", binary_data=i % 3 == 1)]
                result = await http.infer("affine", [item], outputs=wanted)
                version = result.get_response()["model_version"]
        except Exception as err:  # a soak counts failures instead of stopping at the first
            self.errors.append(str(err)[:200])
            return
        self.latencies_ms.append((time.perf_counter() - began) * 1e3)
        self.versions[version] += 1
        if not np.allclose(result.as_numpy("y"), expected(x, float(version) - 1), rtol=1e-6):
            self.wrong += 1


def main() -> Path:
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder)
        status = nbd.server.start(repo, http_port=0, grpc_port=0)
        try:
            nbd.serve(affine(0.0), name="affine", repository=repo)
            process = psutil.Process(status.pid)
            soak = Soak(status, repo)
            asyncio.run(soak.run(WARMUP, with_rollout=False))  # caches, pools, arenas
            rss_before = _rss(process)
            soak = Soak(status, repo)
            seconds = asyncio.run(soak.run(TOTAL, with_rollout=True))
            rss_after = _rss(process)
            final = nbd.deployments(repo)[0].traffic
        finally:
            nbd.server.stop(repo)
    p50, p99 = np.percentile(soak.latencies_ms, [50, 99])
    rows = [{
        "requests": TOTAL, "concurrency": CONCURRENCY, "errors": len(soak.errors),
        "wrong answers": soak.wrong,
        "answered by v1 / v2": f"{soak.versions['1']} / {soak.versions['2']}",
        "traffic after": str(final), "requests/s": TOTAL / seconds,
        "p50 ms": float(p50), "p99 ms": float(p99),
        "RSS MiB before": rss_before / 2**20, "RSS growth MiB": (rss_after - rss_before) / 2**20,
    }]  # fmt: skip
    notes = (
        f"{TOTAL:,} requests at concurrency {CONCURRENCY}, one third each HTTP-JSON, "
        f"HTTP-binary and gRPC (batch 1-4, tritonclient asyncio); v2 is served as a 20% "
        f"canary at request {CANARY_AT:,} and promoted at {PROMOTE_AT:,}. After a warm-up of "
        f"{WARMUP:,}. Client and server share this machine's cores."
        + (f" First errors: {soak.errors[:3]}" if soak.errors else "")
    )
    return _report.write("soak", "Local server soak: mixed protocols, canary and promote",
                         rows, notes)  # fmt: skip


if __name__ == "__main__":
    print(main().read_text())
