"""The local server against a real Triton at its best configuration for this machine,
same model, same requests, same load generator, one interleaved run.

Method. A small CNN (1x3x32x32 in) served by: onnxruntime in process (the floor, Python
threads); our server with 1 worker and with its default (one per core), over HTTP-binary,
HTTP-JSON and gRPC; nvidia-pytriton's ``tritonserver`` as a Triton user would configure
it here: ``instance_group { count: <cores> }``, ``max_batch_size: 8``, dynamic batching on
(a Python-backend model running onnxruntime: the only ONNX path that build has). Our
models get the same config; the default-worker server also serves it with batching off.
Load comes from compiled generators (``benchmarks/loadgen.py``): ``wrk`` for HTTP and
``h2load`` for gRPC (unary ``ModelInfer`` as HTTP/2 POSTs; about ``SECONDS`` of requests,
counted), ``c`` connections with one request in flight each, for concurrency 1, 4, 8 and
16, ``SECONDS`` each; rounds are
interleaved (every target at every concurrency, then again) and each cell is the median
over rounds. p50/p99 are per request, as the generator measured them. A second table
does the same with a 4 MiB input (an identity model), and a third puts system shared
memory beside the socket paths (``serve_shm``). The load generators share this 2-core
machine with the servers: every number is "on a 2-core machine, client included".
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import nbdeploy as nbd
from benchmarks import _report, loadgen, serve_mlserver, serve_shm
from nbdeploy.server.process import cores, default_workers
from nbdeploy.triton import local as triton_local
from nbdeploy.triton.model_folder import write_version

ROUNDS, SECONDS, WARMUP_S = 2, 2.0, 1.0
CONCURRENCY = (1, 4, 8, 16)
LARGE_CONCURRENCY = (1, 4)
X = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
LARGE = np.random.default_rng(1).standard_normal(1 << 20).astype(np.float32)  # 4 MiB
CONFIG = {"instances": cores(), "max_batch_size": 8}  # Triton's best here, and ours


def small_cnn() -> nbd.Artifact:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip
    return nbd.export(model, torch.from_numpy(X), name="cnn")


@dataclass
class Target:
    """One server, protocol and model: ``run(c, seconds)`` measures it under load."""

    server: str
    workers: str
    protocol: str
    batching: str
    run: Callable[[int, float], loadgen.Load]


def targets_for(
    server: str,
    workers: str,
    http: str,
    grpc: str,
    model: str,
    batching: str,
    inputs: dict[str, np.ndarray],
    output: str,
    protocols: tuple[str, ...] = ("http-binary", "http-json", "grpc"),
) -> list[Target]:
    requests = {
        "http-binary": lambda: loadgen.http_request(model, inputs, [output], binary=True),
        "http-json": lambda: loadgen.http_request(model, inputs, [output], binary=False),
        "grpc": lambda: loadgen.grpc_request(model, inputs),
    }
    made = []
    for protocol in protocols:
        request = requests[protocol]()
        if protocol == "grpc":
            run = _bound(loadgen.h2load, grpc, request)
        else:
            run = _bound(loadgen.wrk, http, request)
        made.append(Target(server, workers, protocol, batching, run))
    return made


def _bound(
    tool: Callable[[str, loadgen.Request, int, float], loadgen.Load],
    host: str,
    request: loadgen.Request,
) -> Callable[[int, float], loadgen.Load]:
    return lambda c, seconds: tool(host, request, c, seconds)


@contextlib.contextmanager
def _ours(art: nbd.Artifact, large: nbd.Artifact, workers: int) -> Iterator[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        nbd.server.start(folder, http_port=0, grpc_port=0, workers=workers)
        try:
            nbd.serve(art, name="cnn", repository=folder, **CONFIG)
            nbd.serve(art, name="cnn_nobatch", dynamic_batching=False, repository=folder,
                      **CONFIG)  # fmt: skip
            dep = nbd.serve(large, name="identity", repository=folder, max_batch_size=0)
            _check(dep.http_url.removeprefix("http://"), dep.grpc_url)
            yield {"http": dep.http_url.removeprefix("http://"), "grpc": dep.grpc_url}
        finally:
            nbd.server.stop(folder)


@contextlib.contextmanager
def _triton(art: nbd.Artifact, large: nbd.Artifact) -> Iterator[dict[str, Any] | None]:
    reason = triton_local.unavailable_reason()
    if reason:
        print(f"Triton skipped: {reason}")
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        write_version(folder, art, name="cnn", backend="python", **CONFIG)
        write_version(folder, large, name="identity", backend="python", max_batch_size=0)
        with triton_local.running(folder) as (http, grpc):
            _check(http, grpc)
            yield {"http": http, "grpc": grpc}


def _check(http: str, grpc: str) -> None:
    """One answer each way, right, before timing (h2load cannot read a gRPC status)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc)
    item = grpcclient.InferInput("input", list(X.shape), "FP32")
    item.set_data_from_numpy(X)
    got = client.infer("cnn", [item]).as_numpy("output")
    assert got is not None and got.shape == (1, 10), got
    code = loadgen.wrk(http, loadgen.http_request("cnn", {"input": X}, ["output"], True), 1, 1)
    assert code.errors == 0, code


def _in_process(art: nbd.Artifact) -> Target:
    session = art.session()

    def run(c: int, seconds: float) -> loadgen.Load:
        return _threads(lambda: session.run(None, {"input": X}), c, seconds)

    return Target("onnxruntime in process", "-", "-", "-", run)


def _threads(call: Callable[[], Any], c: int, seconds: float) -> loadgen.Load:
    samples: list[list[float]] = [[] for _ in range(c)]
    stop = threading.Event()

    def worker(i: int) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            call()
            samples[i].append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(c)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    lat = np.concatenate([np.array(s) for s in samples]) * 1e6
    return loadgen.Load(lat.size / seconds, float(np.percentile(lat, 50)),
                        float(np.percentile(lat, 99)), 0)  # fmt: skip


def measure(targets: list[Target], concurrency: tuple[int, ...]) -> list[dict[str, Any]]:
    """Every target at every concurrency, ``ROUNDS`` times interleaved; medians."""
    for target in targets:
        target.run(4, WARMUP_S)
    runs: dict[tuple[int, int], list[loadgen.Load]] = {}
    for _ in range(ROUNDS):
        for i, target in enumerate(targets):
            for c in concurrency:
                runs.setdefault((i, c), []).append(target.run(c, SECONDS))
    rows = []
    for i, target in enumerate(targets):
        row: dict[str, Any] = {
            "server": target.server, "workers": target.workers,
            "protocol": target.protocol, "batching": target.batching,
        }  # fmt: skip
        for c in concurrency:
            loads = runs[(i, c)]
            if any(load.errors for load in loads):
                raise RuntimeError(f"{target} answered errors at c={c}: {loads}")
            row[f"rps_c{c}"] = statistics.median(load.rps for load in loads)
            row[f"p50_us_c{c}"] = statistics.median(load.p50_us for load in loads)
            row[f"p99_us_c{c}"] = statistics.median(load.p99_us for load in loads)
        rows.append(row)
    return rows


def _all_targets(ours: list[tuple[str, dict[str, Any]]], triton: dict[str, Any] | None,
                 model: str, inputs: dict[str, np.ndarray], output: str,
                 with_unbatched: bool) -> list[Target]:  # fmt: skip
    targets = []
    for workers, where in ours:
        targets += targets_for("nbdeploy", workers, where["http"], where["grpc"], model, "on",
                            inputs, output)  # fmt: skip
    if with_unbatched:
        workers, where = ours[-1]
        targets += targets_for(
            "nbdeploy",
            workers,
            where["http"],
            where["grpc"],
            model + "_nobatch",
            "off",
            inputs,
            output,
            ("http-binary", "grpc"),
        )
    if triton is not None:
        targets += targets_for("triton", str(cores()), triton["http"], triton["grpc"], model, "on",
                            inputs, output)  # fmt: skip
    return targets


def main() -> Path:
    art, large = small_cnn(), serve_shm.identity()
    with contextlib.ExitStack() as stack:
        ours = [
            ("1", stack.enter_context(_ours(art, large, 1))),
            (str(default_workers()), stack.enter_context(_ours(art, large, default_workers()))),
        ]
        triton = stack.enter_context(_triton(art, large))
        small = [_in_process(art),
                 *_all_targets(ours, triton, "cnn", {"input": X}, "output", True)]  # fmt: skip
        rows = measure(small, CONCURRENCY)
        big = _all_targets(ours, triton, "identity", {"x": LARGE}, "y", False)
        big = [t for t in big if t.protocol != "http-json"]  # 4 MiB as JSON text: not a use
        large_rows = measure(big, LARGE_CONCURRENCY)
    add_ratios(rows, CONCURRENCY)
    add_ratios(large_rows, LARGE_CONCURRENCY)
    sections = [
        ("4 MiB input (identity model, 4 MiB back)", "Same method, c = 1 and 4.", large_rows),
        ("MLServer 1.7 on its own workload (scikit-learn pipeline, Iris)",
         serve_mlserver.__doc__ or "", _mlserver_rows()),
        ("Large tensors: system shared memory, binary HTTP, gRPC", serve_shm.__doc__ or "",
         serve_shm.rows()),
    ]  # fmt: skip
    return _report.write("serve", "Local server vs Triton at its best (small CNN, 1x3x32x32)",
                         _short(rows), notes=__doc__ or "", sections=sections)  # fmt: skip


def add_ratios(
    rows: list[dict[str, Any]], concurrency: tuple[int, ...], reference: str = "triton"
) -> None:
    """Our requests/s (at c >= 8, or the highest c) and p50 at c=1 over the reference
    server's, same protocol."""
    theirs = {r["protocol"]: r for r in rows if r["server"] == reference}
    top = [c for c in concurrency if c >= 8] or [max(concurrency)]
    for row in rows:
        other = theirs.get(row["protocol"]) if row["server"] == "nbdeploy" else None
        row[f"p50_c1_vs_{reference}"] = row["p50_us_c1"] / other["p50_us_c1"] if other else ""
        for c in top:
            ratio = row[f"rps_c{c}"] / other[f"rps_c{c}"] if other else ""
            row[f"rps_c{c}_vs_{reference}"] = ratio


def _mlserver_rows() -> list[dict[str, Any]]:
    try:
        return serve_mlserver.rows()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"MLServer skipped: {err}")
        return []


def _short(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns the table shows (the JSON keeps every p50/p99)."""
    keep = ["server", "workers", "protocol", "batching", "p50_us_c1", "p99_us_c1", "rps_c1",
            "rps_c4", "rps_c8", "rps_c16", "p50_us_c16", "p99_us_c16", "p50_c1_vs_triton",
            "rps_c8_vs_triton", "rps_c16_vs_triton"]  # fmt: skip
    return [{k: row[k] for k in keep if k in row} for row in rows]


if __name__ == "__main__":
    print(main().read_text())
