"""What a gRPC call costs in each transport, before any model work: why the local server
speaks gRPC on uvicorn's HTTP/2 (``nbdeploy.server.grpc_wire``) and not on ``grpc.aio``.

Method. One process per transport, each answering Triton's ``ModelInfer`` with a fixed
response and no work (the request is parsed, the response serialized): ``grpc.aio`` on
uvloop (its generated servicer), ``grpc.aio`` with a generic handler of raw bytes (no
protobuf in grpc's path), ``grpc``'s thread-pool server, and ``grpc_wire`` (uvicorn's
HTTP/2 on zttp, with our framing). ``h2load`` drives each (``benchmarks/loadgen.py``:
one stream in flight per connection) at concurrency 1, 8 and 16; rounds are interleaved
and each cell is the median. One process and the load generator share this 2-core
machine: what a transport reaches here is roughly what it costs a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _report, loadgen

ROUNDS, SECONDS = 3, 2.0
CONCURRENCY = (1, 8, 16)
TRANSPORTS = {
    "grpc.aio (servicer)": "aio",
    "grpc.aio (generic handler, raw bytes)": "aio-raw",
    "grpc (thread pool of 8)": "sync",
    "grpc_wire (uvicorn HTTP/2, zttp)": "wire",
}


def serve(kind: str, port: int) -> None:
    """Answer ModelInfer on ``port`` with ``kind``'s transport, until killed."""
    from tritonclient.grpc import service_pb2 as pb

    response = pb.ModelInferResponse(model_name="cnn", model_version="1")
    response.outputs.add(name="output", datatype="FP32", shape=[1, 10])
    response.raw_output_contents.append(bytes(40))
    address = f"127.0.0.1:{port}"
    if kind == "sync":
        _serve_sync(address, response)
    else:
        import uvloop

        uvloop.run(_serve_async(kind, address, port, response))


def _serve_sync(address: str, response: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers((_handlers(lambda request, context: response),))
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


async def _serve_async(kind: str, address: str, port: int, response: Any) -> None:
    if kind == "wire":
        from tritonclient.grpc import service_pb2 as pb

        from nbdeploy.server.grpc_wire import GrpcApp, GrpcFrontEnd, Method
        from nbdeploy.server.security import Guard

        async def answer(request: Any, context: Any) -> Any:
            return response

        path = "/inference.GRPCInferenceService/ModelInfer"
        app = GrpcApp({path: Method(pb.ModelInferRequest, answer)}, Guard())
        sock = socket.create_server(("127.0.0.1", port))
        await GrpcFrontEnd(app, sock).start()
        await asyncio.Event().wait()
    import grpc

    server = grpc.aio.server()
    raw: bytes = response.SerializeToString()

    async def typed(request: Any, context: Any) -> Any:
        return response

    async def untyped(request: bytes, context: Any) -> bytes:
        return raw

    server.add_generic_rpc_handlers((_handlers(typed if kind == "aio" else untyped,
                                               typed=kind == "aio"),))  # fmt: skip
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def _handlers(answer: Any, typed: bool = True) -> Any:
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    handler = grpc.unary_unary_rpc_method_handler(
        answer,
        request_deserializer=pb.ModelInferRequest.FromString if typed else None,
        response_serializer=pb.ModelInferResponse.SerializeToString if typed else None,
    )
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService",
                                                {"ModelInfer": handler})  # fmt: skip


@contextlib.contextmanager
def _running(kind: str) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_transports", kind,
                                str(port)], cwd=Path(__file__).parent.parent)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def main() -> Path:
    request = loadgen.grpc_request("cnn", {"input": np.zeros((1, 3, 32, 32), np.float32)})
    samples: dict[tuple[str, int], list[loadgen.Load]] = {}
    for _ in range(ROUNDS):
        for name, kind in TRANSPORTS.items():
            with _running(kind) as address:
                for c in CONCURRENCY:
                    samples.setdefault((name, c), []).append(
                        loadgen.h2load(address, request, c, SECONDS))  # fmt: skip
    rows = []
    for name in TRANSPORTS:
        row: dict[str, Any] = {"transport": name}
        for c in CONCURRENCY:
            loads = samples[(name, c)]
            row[f"rps_c{c}"] = statistics.median(load.rps for load in loads)
            row[f"p50_us_c{c}"] = statistics.median(load.p50_us for load in loads)
        rows.append(row)
    return _report.write("grpc_transports", "A gRPC call with no work, per transport", rows,
                         notes=__doc__ or "")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        serve(sys.argv[1], int(sys.argv[2]))
    else:
        print(main().read_text())
