"""Compiled load generators for ``benchmarks/serve.py``: ``wrk`` (HTTP/1.1) and ``h2load``
(HTTP/2, driving gRPC's unary calls as plain POSTs of a framed message), from Debian's
``wrk`` and ``nghttp2-client`` packages. They cost a few microseconds of CPU a request,
where a Python client costs hundreds, so on a small machine the server, not the client,
sets the pace. Concurrency ``c`` is ``c`` connections with one request in flight each.

The request bodies are made by tritonclient (``generate_request_body``) and tritonclient's
protobuf stubs, exactly what its clients send.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Load", "Request", "available", "grpc_request", "h2load", "http_request", "wrk"]

PER_CONNECTION = 3_500  # requests a connection carries in one h2load run (see h2load)

_WRK_SCRIPT = """
local f = io.open(os.getenv("NBD_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
local header = os.getenv("NBD_HEADER_LENGTH")
if header ~= "" then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header
else
  wrk.headers["Content-Type"] = "application/json"
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'NBD {"requests": %d, "us": %d, "p50": %d, "p99": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Request:
    """One request's bytes: the URL path, the body, and the JSON header's length (binary
    HTTP) or ``None``."""

    path: str
    body: bytes
    header_length: int | None = None


@dataclass(frozen=True)
class Load:
    """What one timed run measured."""

    rps: float
    p50_us: float
    p99_us: float
    errors: int


def available() -> str | None:
    """Why the load generators cannot run here (``None`` if they can)."""
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found: apt-get install wrk nghttp2-client"
    return None


def http_request(
    model: str, inputs: dict[str, np.ndarray], outputs: list[str], binary: bool
) -> Request:
    """A KServe V2 inference request as tritonclient's HTTP client sends it (tensors as
    binary data both ways, or all JSON)."""
    import tritonclient.http as httpclient

    items = []
    for name, array in inputs.items():
        item = httpclient.InferInput(name, list(array.shape), _datatype(array))
        item.set_data_from_numpy(array, binary_data=binary)
        items.append(item)
    wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(items, wanted)
    return Request(f"/v2/models/{model}/infer", body, json_size)


def grpc_request(model: str, inputs: dict[str, np.ndarray]) -> Request:
    """A ``ModelInfer`` call's body: gRPC's 5-byte frame around tritonclient's protobuf."""
    from tritonclient.grpc import service_pb2

    message = service_pb2.ModelInferRequest(model_name=model)
    for name, array in inputs.items():
        tensor = message.inputs.add(name=name, datatype=_datatype(array))
        tensor.shape.extend(array.shape)
        message.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    data = message.SerializeToString()
    return Request("/inference.GRPCInferenceService/ModelInfer",
                   struct.pack(">BI", 0, len(data)) + data)  # fmt: skip


def wrk(host: str, request: Request, connections: int, seconds: float) -> Load:
    """``connections`` HTTP/1.1 connections, one request in flight each, for ``seconds``
    (wrk takes whole seconds: at least 1)."""
    with tempfile.TemporaryDirectory() as folder:
        body, script = Path(folder) / "body", Path(folder) / "script.lua"
        body.write_bytes(request.body)
        script.write_text(_WRK_SCRIPT)
        env = {"NBD_BODY": str(body), "PATH": "/usr/bin:/bin",
               "NBD_HEADER_LENGTH": "" if request.header_length is None
               else str(request.header_length)}  # fmt: skip
        threads = min(connections, 2)
        done = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                f"http://{host}{request.path}",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode:
            raise RuntimeError(f"wrk failed: {done.stdout[-500:]} {done.stderr[-500:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("NBD "))
    doc = json.loads(line[4:])
    return Load(doc["requests"] / (doc["us"] / 1e6), doc["p50"], doc["p99"], doc["errors"])


def h2load(host: str, request: Request, connections: int, seconds: float) -> Load:
    """``connections`` HTTP/2 connections, one stream in flight each, for about ``seconds``
    (a gRPC status in the trailers is not checked: check one answer before timing).

    h2load does not reconnect after a server's GOAWAY, and our server recycles each
    connection after :data:`~nbdeploy.server.grpc_wire.RECYCLE_AFTER` streams, so runs
    are counted, not timed: a short timed probe gives the rate, then ``rate * seconds``
    requests (at most :data:`PER_CONNECTION` per connection) are timed. Every target
    is measured this way, Triton too."""
    probe = _h2load(host, request, connections, ["-D300ms", "--warm-up-time=200ms"])
    total = round(probe.rps * seconds)
    total = max(connections, min(total, connections * PER_CONNECTION))
    return _h2load(host, request, connections, [f"-n{total}"])


def _h2load(host: str, request: Request, connections: int, mode: list[str]) -> Load:
    with tempfile.TemporaryDirectory() as folder:
        body, log = Path(folder) / "body", Path(folder) / "log"
        body.write_bytes(request.body)
        threads = min(connections, 2)
        done = subprocess.run(
            ["h2load", f"-c{connections}", "-m1", f"-t{threads}", *mode, "-d", str(body),
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"--log-file={log}", f"http://{host}{request.path}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"h2load failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        rows = np.loadtxt(log, dtype=np.int64, ndmin=2)
    rps = float(next(x for x in done.stdout.splitlines() if "req/s" in x and "finished" in x)
                .split(",")[1].split()[0])  # fmt: skip
    # Timed runs: streams still in flight when the time is up end as -1 (one a connection).
    cut = int(np.count_nonzero(rows[:, 1] == -1))
    failed = int(np.count_nonzero(~np.isin(rows[:, 1], (200, -1)))) + max(0, cut - connections)
    latency = rows[rows[:, 1] == 200, 2]
    return Load(rps, float(np.percentile(latency, 50)), float(np.percentile(latency, 99)), failed)


def _datatype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return str(np_to_triton_dtype(array.dtype))
