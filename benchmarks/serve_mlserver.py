"""A second peer on the workload it is built for: MLServer 1.7 serving a scikit-learn
pipeline (StandardScaler + LogisticRegression on Iris) with its sklearn runtime, against
our server serving the same fitted pipeline exported to ONNX. Same load generators, same
row (1x4 FP32), same method as the main table; MLServer speaks V2 JSON over REST (no
binary extension) and V2 gRPC (``raw_input_contents``), so those two are compared, and
our binary HTTP is shown beside them.

MLServer runs as its documentation suggests for throughput: ``parallel_workers`` = cores
(its inference pool) and adaptive batching on (``max_batch_size`` 8,
``max_batch_time`` 0.5 ms); it lives in a virtualenv of its own under
``$NBDEPLOY_CACHE/mlserver`` (it pins its own fastapi, pydantic and protobuf), built once.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import nbdeploy as nbd
from nbdeploy.server.process import cores, default_workers

__all__ = ["PACKAGES", "prepare", "rows"]

# uvloop < 0.22: MLServer 1.7's parallel workers call asyncio.get_event_loop() with no
# loop running, which uvloop 0.22 and later refuse (the workers die at start).
PACKAGES = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22")
CONCURRENCY = (1, 8, 16)


def cache_folder() -> Path:
    """``$NBDEPLOY_CACHE/mlserver`` (default ``~/.cache/nbdeploy/mlserver``)."""
    return Path(os.environ.get("NBDEPLOY_CACHE", "~/.cache/nbdeploy")).expanduser() / "mlserver"


def prepare() -> Path:
    """Build MLServer's venv once (again when :data:`PACKAGES` or scikit-learn's version
    change: the pickled pipeline needs the same one); return its ``mlserver`` command."""
    import sklearn

    venv = cache_folder() / "venv"
    wanted = "\n".join([*PACKAGES, f"scikit-learn=={sklearn.__version__}"])
    stamp = venv / ".nbdeploy-packages"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        env = {**os.environ, "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR")
               or str(cache_folder().parent / "pip")}  # fmt: skip
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        *wanted.split("\n")], check=True, env=env)  # fmt: skip
        stamp.write_text(wanted)
    return venv / "bin" / "mlserver"


def pipeline() -> tuple[Any, np.ndarray]:
    """The fitted pipeline and one row of Iris."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y), x[:1]


@contextlib.contextmanager
def _mlserver(pipe: Any) -> Iterator[dict[str, str]]:
    import joblib

    command = prepare()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "iris").mkdir()
        joblib.dump(pipe, root / "iris" / "model.joblib")
        (root / "iris" / "model-settings.json").write_text(json.dumps({
            "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
            "max_batch_size": 8, "max_batch_time": 0.0005,
            "parameters": {"uri": "./model.joblib"},
        }))  # fmt: skip
        http, grpc, metrics = (_free_port() for _ in range(3))
        (root / "settings.json").write_text(json.dumps({
            "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
            "parallel_workers": cores(), "debug": False,
        }))  # fmt: skip
        log = (root / "mlserver.log").open("w")
        server = subprocess.Popen([str(command), "start", str(root)], cwd=root, stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        try:
            _wait_ready(f"http://127.0.0.1:{http}/v2/models/iris/ready", server, root)
            yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}"}
        finally:
            server.terminate()
            server.wait(30)
            log.close()


@contextlib.contextmanager
def _ours(pipe: Any, row: np.ndarray) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as folder:
        nbd.server.start(folder, http_port=0, grpc_port=0)
        try:
            art = nbd.export(pipe, row, name="iris")
            dep = nbd.serve(art, name="iris", repository=folder, instances=cores(),
                            max_batch_size=8)  # fmt: skip
            yield {"http": dep.http_url.removeprefix("http://"), "grpc": dep.grpc_url}
        finally:
            nbd.server.stop(folder)


def rows() -> list[dict[str, Any]]:
    """The comparison's rows (none, with a note, where MLServer cannot be had)."""
    from benchmarks.serve import add_ratios, measure, targets_for

    pipe, row = pipeline()
    with _mlserver(pipe) as theirs, _ours(pipe, row) as ours:
        mine = targets_for(
            "nbdeploy",
            str(default_workers()),
            ours["http"],
            ours["grpc"],
            "iris",
            "on",
            {"X": row},
            "label",
        )
        peer = targets_for(
            "mlserver",
            str(cores()),
            theirs["http"],
            theirs["grpc"],
            "iris",
            "adaptive",
            {"input-0": row},
            "predict",
            ("http-json", "grpc"),
        )
        _check(theirs["grpc"], row)
        measured = measure([*mine, *peer], CONCURRENCY)
    add_ratios(measured, CONCURRENCY, reference="mlserver")
    return measured


def _check(grpc: str, row: np.ndarray) -> None:
    """MLServer answers the gRPC request the load generator sends (h2load cannot read a
    gRPC status)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc)
    item = grpcclient.InferInput("input-0", list(row.shape), "FP32")
    item.set_data_from_numpy(row)
    answer = client.infer("iris", [item]).as_numpy("predict")
    if answer is None or answer.shape[0] != 1:
        raise RuntimeError(f"mlserver answered {answer!r}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, server: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlserver exited: {(root / 'mlserver.log').read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("mlserver did not get ready in 120 s")
