"""Large tensors through the local server and a real Triton: system shared memory (the
tensor stays in a POSIX segment both sides map) against binary HTTP and gRPC (the bytes
travel through the socket), on an identity model, 4 MiB and 64 MiB each way.

Used by ``benchmarks/serve.py``, whose report carries these rows as a second table.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, helper

import nbdeploy as nbd
from nbdeploy.triton import local as triton_local
from nbdeploy.triton.model_folder import write_version

SIZES_MIB = (4, 64)
REPEATS = {4: 30, 64: 8}


def identity() -> nbd.Artifact:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return nbd.export(model, name="identity")


def _binary_http(http: str, x: np.ndarray) -> Callable[[], np.ndarray]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(http, network_timeout=300.0)
    item = httpclient.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=True)
    wanted = [httpclient.InferRequestedOutput("y", binary_data=True)]
    return lambda: client.infer("identity", [item], outputs=wanted).as_numpy("y")


def _grpc(grpc: str, x: np.ndarray) -> Callable[[], np.ndarray]:
    import tritonclient.grpc as grpcclient

    from nbdeploy.triton.client import GRPC_LIMITS

    client = grpcclient.InferenceServerClient(grpc, channel_args=GRPC_LIMITS)
    item = grpcclient.InferInput("x", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    return lambda: client.infer("identity", [item]).as_numpy("y")


@contextlib.contextmanager
def _shm(http: str, x: np.ndarray, tag: str) -> Iterator[Callable[[], np.ndarray]]:
    import tritonclient.http as httpclient
    import tritonclient.utils.shared_memory as shm

    client = httpclient.InferenceServerClient(http, network_timeout=300.0)
    regions = [shm.create_shared_memory_region(f"{d}-{tag}", f"/nbd-bench-{d}-{tag}", x.nbytes)
               for d in ("in", "out")]  # fmt: skip
    try:
        shm.set_shared_memory_region(regions[0], [x])
        for d in ("in", "out"):
            client.register_system_shared_memory(f"{d}-{tag}", f"/nbd-bench-{d}-{tag}", x.nbytes)
        item = httpclient.InferInput("x", list(x.shape), "FP32")
        item.set_shared_memory(f"in-{tag}", x.nbytes)
        wanted = httpclient.InferRequestedOutput("y")
        wanted.set_shared_memory(f"out-{tag}", x.nbytes)

        def call() -> np.ndarray:
            client.infer("identity", [item], outputs=[wanted])
            return shm.get_contents_as_numpy(regions[1], np.float32, list(x.shape))

        yield call
    finally:
        client.unregister_system_shared_memory()
        for region in regions:
            shm.destroy_shared_memory_region(region)


def _p50_ms(call: Callable[[], np.ndarray], x: np.ndarray, repeats: int) -> float:
    np.testing.assert_array_equal(call(), x)  # and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _rows_for(server: str, http: str, grpc: str) -> list[dict[str, Any]]:
    rows = []
    for mib in SIZES_MIB:
        x = np.random.default_rng(0).standard_normal(mib * 2**18).astype(np.float32)
        with _shm(http, x, f"{server}-{mib}") as through_shm:
            timings = {"shared memory (HTTP)": _p50_ms(through_shm, x, REPEATS[mib]),
                       "HTTP binary": _p50_ms(_binary_http(http, x), x, REPEATS[mib]),
                       "gRPC": _p50_ms(_grpc(grpc, x), x, REPEATS[mib])}  # fmt: skip
        rows += [{"server": server, "tensor MiB (each way)": mib, "path": path, "p50_ms": ms}
                 for path, ms in timings.items()]  # fmt: skip
    return rows


def rows() -> list[dict[str, Any]]:
    """The table: p50 of one request per server, tensor size and path."""
    art = identity()
    found: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as ours:
        status = nbd.server.start(ours, http_port=0, grpc_port=0, max_request_bytes=2**30)
        try:
            nbd.serve(art, name="identity", repository=ours, max_batch_size=0)
            found += _rows_for("nbdeploy", status.http_url.removeprefix("http://"),
                               status.grpc_url)  # fmt: skip
        finally:
            nbd.server.stop(ours)
    if triton_local.unavailable_reason() is None:
        with tempfile.TemporaryDirectory() as folder:
            write_version(Path(folder), art, name="identity", backend="python", max_batch_size=0)
            with triton_local.running(folder) as (http, grpc):
                found += _rows_for("triton", http, grpc)
    return found
