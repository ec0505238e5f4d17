"""A server of several worker processes, through the real server and real tritonclient:
every connection below is a new one, so the kernel spreads them over the workers
(``SO_REUSEPORT`` hashes each connection), and each assertion holds only if every worker
sees the same state and the counts add up across them."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import nbdeploy as nbd
from nbdeploy.server.batcher import Scheduler
from nbdeploy.server.config import build_config
from nbdeploy.server.stats import VersionStats
from nbdeploy.types import TensorSpec
from tests.servers import Endpoint, affine, expected

pytestmark = pytest.mark.slow

WORKERS = 3  # more than this machine's cores: the workers must still agree
X = np.ones((2, 3), np.float32)
BODY = json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                               "data": X.ravel().tolist()}]})  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    nbd.server.start(tmp_path, http_port=0, grpc_port=0, workers=WORKERS)
    yield tmp_path
    nbd.server.stop(tmp_path)


def _endpoint(repo: Path) -> Endpoint:
    status = nbd.server.status(repo)
    return Endpoint("nbdeploy", status.http_url.removeprefix("http://"), status.grpc_url, repo)


def _answers(endpoint: Endpoint, count: int, path: str = "/v2/models/affine/infer") -> Counter[str]:
    """``count`` requests, each on a connection of its own; the versions that answered."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        code, doc = endpoint.request("POST", path, BODY)
        assert code == 200, doc
        version = doc["model_version"]
        np.testing.assert_allclose(np.reshape(doc["outputs"][0]["data"], (2, 2)),
                                   expected(X, float(version) - 1), rtol=1e-6)  # fmt: skip
        seen[version] += 1
    return seen


def _success(endpoint: Endpoint) -> int:
    _, doc = endpoint.request("GET", "/v2/models/affine/versions/1/stats")
    return int(doc["model_stats"][0]["inference_stats"]["success"]["count"])


def test_the_server_runs_the_workers_asked_for(repo: Path) -> None:
    pid = nbd.server.status(repo).pid
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    assert len(children.stdout.split()) >= WORKERS  # and multiprocessing's resource tracker
    status = nbd.server.status(repo)
    assert status.workers == WORKERS and f"({WORKERS} workers)" in str(status)
    assert "workers" in status._repr_html_()


def test_statistics_and_metrics_are_exact_totals_over_the_workers(repo: Path) -> None:
    dep = nbd.serve(affine(0), name="affine", repository=repo)
    endpoint = _endpoint(repo)
    before = _success(endpoint)
    _answers(endpoint, 120)
    for _ in range(30):  # and over gRPC, a channel each
        client = grpcclient.InferenceServerClient(endpoint.grpc)
        item = grpcclient.InferInput("x", [2, 3], "FP32")
        item.set_data_from_numpy(X)
        client.infer("affine", [item])
        client.close()
    assert _success(endpoint) == before + 150
    for _ in range(5):  # whichever worker answers, the same totals
        _, doc = endpoint.request("GET", "/v2/models/affine/stats")
        (stats,) = doc["model_stats"]
        assert stats["inference_stats"]["success"]["count"] == before + 150
        assert stats["inference_count"] == 2 * (before + 150)
        assert sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats[
            "execution_count"]  # fmt: skip
    text = urllib.request.urlopen(dep.metrics_url).read().decode()
    success = re.search(r'nv_inference_request_success\{model="affine",version="1"\} (\d+)', text)
    assert success is not None and int(success.group(1)) == before + 150
    summary = re.search(r'nv_inference_request_summary_us_count\{model="affine",version="1"\} '
                        r"(\d+)", text)  # fmt: skip
    assert summary is not None and int(summary.group(1)) == before + 150


def test_the_live_view_counts_every_workers_requests(repo: Path) -> None:
    nbd.serve(affine(0), name="affine", repository=repo)
    endpoint = _endpoint(repo)
    _answers(endpoint, 60)
    success = _success(endpoint)
    for _ in range(5):  # whichever worker answers the poll, every window holds them all
        _, doc = endpoint.request("GET", "/v2/nbdeploy/overview")
        (version,) = doc["models"][0]["versions"]
        assert version["requests"] == success
        assert sum(w["requests"] for w in version["history"]) == success
        assert version["p50_ms"] is not None


def test_merged_statistics_add_other_workers_windows_and_latencies() -> None:
    mine, theirs = VersionStats(), VersionStats()
    mine.record_request(True, 2_000_000)
    theirs.record_request(True, 4_000_000)
    theirs.record_request(False, 6_000_000)
    merged = mine.merged([theirs.snapshot()])
    assert len(merged.recent_us) == 3 and merged.latency_us([0.5]) == [4000.0]
    windows = [(w["requests"], w["failures"]) for w in merged.history()]
    assert windows in ([(3, 1)], [(1, 0), (2, 1)])  # one window, or two across a boundary
    assert len(mine.recent_us) == 1  # the worker's own statistics are untouched


def test_canary_promote_and_rollback_reach_every_worker(repo: Path) -> None:
    nbd.serve(affine(0), name="affine", repository=repo)
    canary = nbd.serve(affine(1), name="affine", canary=25, repository=repo)
    endpoint = _endpoint(repo)
    seen = _answers(endpoint, 300)
    assert 0.15 < seen["2"] / 300 < 0.35, seen
    assert canary.promote() == {1: 0.0, 2: 100.0}
    assert _answers(endpoint, 40) == Counter({"2": 40})  # no worker still splits
    assert canary.rollback() == {1: 100.0}
    assert _answers(endpoint, 40) == Counter({"1": 40})
    for _ in range(10):
        code, _ = endpoint.request("GET", "/v2/models/affine/versions/2/ready")
        assert code == 400  # the canary is unloaded in every worker


def test_no_request_is_lost_while_versions_come_and_go(repo: Path) -> None:
    """Clients keep sending while a canary is served and rolled back, five times: every
    request is answered, by a version it may pick (a worker told of a rollback stops the
    canary only after it stops routing to it)."""
    nbd.serve(affine(0), name="affine", repository=repo)
    endpoint = _endpoint(repo)
    stop, failures, answered = threading.Event(), [], Counter[str]()

    def client() -> None:
        while not stop.is_set():
            code, doc = endpoint.request("POST", "/v2/models/affine/infer", BODY)
            if code == 200:
                answered[doc["model_version"]] += 1
            else:
                failures.append(doc)

    with ThreadPoolExecutor(8) as pool:
        clients = [pool.submit(client) for _ in range(8)]
        try:
            for _ in range(5):
                nbd.serve(affine(1), name="affine", canary=50, repository=repo).rollback()
        finally:
            stop.set()
        for done in clients:
            done.result()
    assert failures == [], failures[:3]
    assert answered["1"] > 0 and sum(answered.values()) > 100, answered


def test_unload_and_load_reach_every_worker(repo: Path) -> None:
    dep = nbd.serve(affine(0), name="affine", repository=repo)
    endpoint = _endpoint(repo)
    dep.client().unload_model("affine")
    for _ in range(20):
        code, _ = endpoint.request("POST", "/v2/models/affine/infer", BODY)
        assert code == 404
    dep.client().load_model("affine")
    assert _answers(endpoint, 20) == Counter({"1": 20})


def test_a_shared_memory_region_is_registered_in_every_worker(repo: Path) -> None:
    import tritonclient.utils.shared_memory as shm

    nbd.serve(affine(0), name="affine", repository=repo)
    endpoint = _endpoint(repo)
    region = shm.create_shared_memory_region("in-workers", "/nbd-in-workers", X.nbytes)
    try:
        shm.set_shared_memory_region(region, [X])
        httpclient.InferenceServerClient(endpoint.http).register_system_shared_memory(
            "in-workers", "/nbd-in-workers", X.nbytes)  # fmt: skip
        for _ in range(20):
            client = httpclient.InferenceServerClient(endpoint.http)
            item = httpclient.InferInput("x", [2, 3], "FP32")
            item.set_shared_memory("in-workers", X.nbytes)
            np.testing.assert_allclose(client.infer("affine", [item]).as_numpy("y"),
                                       expected(X), rtol=1e-6)  # fmt: skip
            client.close()
        httpclient.InferenceServerClient(endpoint.http).unregister_system_shared_memory()
        for _ in range(10):
            _, status = endpoint.request("GET", "/v2/systemsharedmemory/status")
            assert status == []
    finally:
        shm.destroy_shared_memory_region(region)


def test_log_settings_reach_every_worker(repo: Path) -> None:
    endpoint = _endpoint(repo)
    client = httpclient.InferenceServerClient(endpoint.http)
    client.update_log_settings({"log_verbose_level": 1})
    for _ in range(10):
        _, doc = endpoint.request("GET", "/v2/logging")
        assert doc["log_verbose_level"] == 1


def test_starting_again_with_another_count_warns_and_keeps_the_server(repo: Path) -> None:
    with pytest.warns(UserWarning, match=f"has {WORKERS} worker"):
        status = nbd.server.start(repo, workers=1)
    assert status.workers == WORKERS


def test_bad_worker_counts_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(nbd.ConfigError, match="workers must be a whole number from 1"):
        nbd.server.start(tmp_path, workers=0)


def test_each_worker_runs_its_share_of_the_instances() -> None:
    import asyncio

    config = build_config("m", [TensorSpec("x", "float32", (None, 3))],
                          [TensorSpec("y", "float32", (None, 2))], max_batch_size=8)  # fmt: skip
    del config.instance_group[:]
    config.instance_group.add(count=4)

    async def tasks(workers: int) -> int:
        with ThreadPoolExecutor(1) as pool:
            scheduler = Scheduler(lambda feed: {}, config, VersionStats(), pool, workers=workers)
            count = len(scheduler._workers)
            await scheduler.close()
            return count

    assert [asyncio.run(tasks(w)) for w in (1, 2, 3, 8)] == [4, 2, 2, 1]
