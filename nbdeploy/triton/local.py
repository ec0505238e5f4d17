"""A real Triton on this machine, from the ``nvidia-pytriton`` wheel: its ``tritonserver``
(2.51, CPU, Python backend) unpacked into a cache folder — never pip-installed into the
project's environment, whose numpy and tritonclient it would downgrade.

The Python backend's stub runs with the first ``python3`` on ``PATH`` and needs numpy<2,
so it gets a small venv of its own with ``numpy<2`` and ``onnxruntime``.

    >>> from nbdeploy.triton import local
    >>> with local.running("/tmp/repo") as (http, grpc):   # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import TritonUnavailableError

__all__ = ["prepare", "running", "unavailable_reason"]

WHEEL = "nvidia-pytriton==0.7.0"
STUB_PACKAGES = ["numpy<2", "onnxruntime"]


def cache_folder() -> Path:
    """``$NBDEPLOY_CACHE/triton`` (default ``~/.cache/nbdeploy/triton``)."""
    return Path(os.environ.get("NBDEPLOY_CACHE", "~/.cache/nbdeploy")).expanduser() / "triton"


def prepare() -> Path:
    """Download, unpack and set up once (idempotent); returns the unpacked folder."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise TritonUnavailableError("the nvidia-pytriton wheel runs on Linux x86_64 only")
    root = cache_folder()
    unpacked, venv = root / "unpacked", root / "stub-venv"
    if (root / ".ready").exists():
        return unpacked
    root.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    _run([*pip, "download", "--no-deps", WHEEL, "-d", str(root / "wheel")])
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(next((root / "wheel").glob("nvidia_pytriton-*.whl"))) as wheel:
        wheel.extractall(unpacked)
    server = unpacked / "pytriton" / "tritonserver"
    (server / "bin" / "tritonserver").chmod(0o755)
    stub = server / "python_backend_stubs" / "3.11" / "triton_python_backend_stub"
    shutil.copy2(stub, server / "backends" / "python" / stub.name)
    (server / "backends" / "python" / stub.name).chmod(0o755)
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "-q", "install", *STUB_PACKAGES])
    (root / ".ready").touch()
    return unpacked


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise TritonUnavailableError(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")


def unavailable_reason() -> str | None:
    """Why the local Triton cannot run here, or ``None`` when it can."""
    try:
        unpacked = prepare()
    except (TritonUnavailableError, OSError) as err:
        return f"no local Triton: {err}"
    # --help exits non-zero, but only after the binary loaded all of its libraries.
    done = subprocess.run([str(_binary(unpacked)), "--help"], env=_env(unpacked),
                          capture_output=True, check=False)  # fmt: skip
    usage = b"--model-repository" in done.stdout + done.stderr
    return None if usage else f"tritonserver does not start: {done.stderr[-500:]!r}"


def _binary(unpacked: Path) -> Path:
    return unpacked / "pytriton" / "tritonserver" / "bin" / "tritonserver"


def _env(unpacked: Path) -> dict[str, str]:
    libs = str(unpacked / "nvidia_pytriton.libs")
    stub_bin = str(cache_folder() / "stub-venv" / "bin")
    return {
        **os.environ,
        "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [libs, os.environ.get("LD_LIBRARY_PATH")])),
        "PATH": os.pathsep.join([stub_bin, os.environ.get("PATH", "")]),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running(
    repository: str | os.PathLike[str],
    *,
    timeout: float = 180.0,
    control_mode: str = "explicit",
    load_all: bool = True,
) -> Iterator[tuple[str, str]]:
    """Run ``tritonserver`` on ``repository`` (explicit model control by default, every
    model loaded at start unless ``load_all=False``); yields ``("127.0.0.1:<http>",
    "127.0.0.1:<grpc>")``."""
    unpacked = prepare()
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    log = Path(repository) / "tritonserver.log"
    command = [
        str(_binary(unpacked)), f"--model-repository={Path(repository).resolve()}",
        f"--model-control-mode={control_mode}", "--exit-timeout-secs=3",
        # Ready means "answers", as for nbdeploy's server: a model that failed to load
        # shows in its own readiness, not the server's (strict mode would make one failed
        # push turn the whole server unready).
        "--strict-readiness=false",
        *(["--load-model=*"] if control_mode == "explicit" and load_all else []),
        "--http-address=127.0.0.1",
        f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
        f"--metrics-port={metrics}", "--allow-metrics=true",
        f"--backend-directory={unpacked / 'pytriton' / 'tritonserver' / 'backends'}",
        f"--cache-directory={unpacked / 'pytriton' / 'tritonserver' / 'caches'}",
    ]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=_env(unpacked), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(server, http, log, timeout)
        yield f"127.0.0.1:{http}", f"127.0.0.1:{grpc}"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_ready(server: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise TritonUnavailableError(
                f"tritonserver exited:\n{log.read_text(errors='replace')[-3000:]}"
            )
        ready = f"http://127.0.0.1:{port}/v2/health/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2):
            return
        time.sleep(0.25)
    raise TritonUnavailableError(
        f"tritonserver not ready in {timeout:.0f}s:\n{log.read_text()[-3000:]}"
    )
