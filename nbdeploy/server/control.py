"""Start, find and stop the local server from a notebook: ``nbd.server.start()``,
``nbd.server.status()``, ``nbd.server.stop()``.

The server runs as its own (detached) process, so a kernel restart leaves it serving;
the state file it writes in the repository is how a new kernel finds it again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._warnings import warn
from ..errors import ConfigError, MissingDependencyError, ServerError
from .client import LocalServer
from .layout import LOG_FILE, START_LOCK_FILE, STATE_FILE
from .security import check_token

log = logging.getLogger(__name__)

__all__ = ["ServerStatus", "default_repository", "running", "start", "status", "stop"]

PREFERRED_PORTS = (8000, 8001)  # Triton's, when free
RECLAIM_SECONDS = 5.0  # how long a restart waits for its old ports before it moves


def default_repository() -> Path:
    """``$NBDEPLOY_REPOSITORY``, or ``~/.local/share/nbdeploy/repository``."""
    env = os.environ.get("NBDEPLOY_REPOSITORY")
    if env:
        return Path(env).expanduser()
    data = Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser()
    return data / "nbdeploy" / "repository"


@dataclass(frozen=True)
class ServerStatus:
    """Where the local server listens and what it serves.

    Attributes:
        running: Whether a live server serves the repository.
        repository: The model repository folder.
        pid: The server's process id.
        http_url: Base URL for HTTP (KServe V2 REST).
        grpc_url: ``host:port`` for gRPC.
        metrics_url: Prometheus metrics.
        models: Repository index rows (name, version, state, reason).
        tfs_grpc_url: ``host:port`` of TF Serving's gRPC API ("" when not served).
        workers: Worker processes answering requests (sharing the ports).
    """

    running: bool
    repository: Path
    pid: int | None = None
    http_url: str = ""
    grpc_url: str = ""
    metrics_url: str = ""
    models: list[dict[str, str]] = field(default_factory=list)
    token: str | None = field(default=None, repr=False)
    tfs_grpc_url: str = ""
    workers: int = 1

    def __str__(self) -> str:
        if not self.running:
            return f"nbdeploy server: not running (repository {self.repository})"
        ready = sorted({m["name"] for m in self.models if m.get("state") == "READY"})
        damaged = [f"{m['name']} v{m['version']}: {m['reason']}" for m in self.damaged]
        tfs = f", {self.tfs_grpc_url} (TF Serving gRPC)" if self.tfs_grpc_url else ""
        return (
            f"nbdeploy server pid {self.pid} ({self._workers_text}): {self.http_url} (HTTP), "
            f"{self.grpc_url} (gRPC)"
            f"{tfs}, metrics {self.metrics_url}\n  repository {self.repository}\n"
            f"  models ready: {', '.join(ready) or 'none'}"
            + (f"\n  loading after a restart: {', '.join(self.loading)}" if self.loading else "")
            + "".join(f"\n  not served: {line}" for line in damaged)
        )

    @property
    def _workers_text(self) -> str:
        return f"{self.workers} worker{'s' if self.workers != 1 else ''}"

    @property
    def loading(self) -> list[str]:
        """Models a restart is still bringing back (each ready as it loads)."""
        return sorted({m["name"] for m in self.models if m.get("state") == "LOADING"})

    def wait_ready(self, timeout: float = 300.0) -> ServerStatus:
        """Wait until every model of the last run is loaded again (the server answers
        meanwhile; this is for scripts that need them all); the status then.

        Raises:
            ServerError: Not ready within ``timeout`` seconds (the message names the
                models still loading).
        """
        deadline = time.monotonic() + timeout
        with self.connect() as server:
            while not server.ready():
                if time.monotonic() > deadline:
                    left = ", ".join(status(self.repository).loading) or "models"
                    raise ServerError(f"the server at {self.http_url} is still loading "
                                      f"{left} after {timeout:g} s")  # fmt: skip
                time.sleep(0.1)
        return status(self.repository)

    @property
    def damaged(self) -> list[dict[str, str]]:
        """Index rows of versions that could not be loaded, with the reason."""
        benign = ("", "unloaded", "not loaded (no traffic)", "loading after a restart")
        return [
            m for m in self.models if m.get("state") != "READY" and m.get("reason") not in benign
        ]

    def connect(self) -> LocalServer:
        """A client for this server's own API (repository, traffic, overview)."""
        if not self.running:
            raise ServerError(f"no server is running for {self.repository}; nbd.server.start()")
        return LocalServer(self.http_url, token=self.token)

    def _repr_html_(self) -> str:
        from .. import _html

        if not self.running:
            return _html.card(
                "nbdeploy server",
                _html.fields([("state", "not running"), ("repository", self.repository)]),
            )
        facts = _html.fields(
            [
                ("pid", self.pid),
                ("workers", self.workers),
                ("HTTP", self.http_url),
                ("gRPC", self.grpc_url),
                *([("TF Serving gRPC", self.tfs_grpc_url)] if self.tfs_grpc_url else []),
                ("metrics", self.metrics_url),
                ("repository", self.repository),
            ]
        )
        rows = [
            [m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", "")]
            for m in self.models
        ]
        return _html.card("nbdeploy server", facts + _html.table(
            ["model", "version", "state", "reason"], rows))  # fmt: skip


def start(
    repository: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    http_port: int | None = None,
    grpc_port: int | None = None,
    tfs_grpc_port: int | None = None,
    token: str | None = None,
    max_request_bytes: int | None = None,
    allowed_origins: Sequence[str] = (),
    workers: int | None = None,
    timeout: float = 60.0,
) -> ServerStatus:
    """Start the local server in the background (or return the one already running).

    Args:
        repository: Model repository folder (default: :func:`default_repository`).
        host: Address to listen on; anything but loopback needs ``token``.
        http_port: HTTP port (default: the one this repository's server used last, else
            8000, when free; else any free port).
        grpc_port: gRPC port (likewise, 8001).
        tfs_grpc_port: Also serve TF Serving's gRPC API (``PredictionService``,
            ``ModelService``) on this port (0: any free; TF Serving's own is 8500).
            ``None`` (the default): not served, and the server never imports tensorflow.
        token: Bearer token clients must send (``Authorization: Bearer <token>``).
        max_request_bytes: Largest request body accepted (default 64 MiB).
        allowed_origins: Web origins (``https://dash.example``) whose pages may call the
            server; pages of other sites are refused (loopback pages are always allowed).
        workers: Worker processes answering requests (default: one per core, at most 8).
            They share the ports and every change to the served models; each holds its
            own copy of every model, so pass ``workers=1`` for models that fit in memory
            only once.
        timeout: Seconds to wait for the server to answer. It answers at once: the
            models of its last run come back in the background, each ready as it loads
            (``status().models`` or ``/v2/models/<name>/ready`` tell which).

    Returns:
        The running server's :class:`ServerStatus` (a server already running keeps its
        number of workers, with a warning when ``workers`` asks for another).

    Raises:
        ConfigError: The token cannot travel in a header (not printable ASCII), or
            ``workers`` is not a whole number from 1.
        MissingDependencyError: ``tfs_grpc_port`` without ``tensorflow-serving-api``.
        ServerError: The server exited or did not answer in time (the message carries
            the end of its log), or the one running does not serve TF Serving's gRPC API
            that ``tfs_grpc_port`` asks for.
    """
    check_token(token)
    if workers is not None and (isinstance(workers, bool) or not 1 <= workers <= 1024):
        raise ConfigError(f"workers must be a whole number from 1 to 1024, not {workers!r}; "
                          "leave it out for one per core")  # fmt: skip
    if tfs_grpc_port is not None and importlib.util.find_spec("tensorflow_serving") is None:
        raise MissingDependencyError("tensorflow-serving-api", "tfserving",
                                     "TF Serving's gRPC API (tfs_grpc_port)")  # fmt: skip
    root = resolve(repository)
    root.mkdir(parents=True, exist_ok=True)
    with _starting(root):  # two kernels starting at once get one server
        current = status(root)
        if current.running:
            if tfs_grpc_port is not None and not current.tfs_grpc_url:
                raise ServerError(
                    f"the server running for {root} (pid {current.pid}) does not serve TF "
                    "Serving's gRPC API; nbd.server.stop() it first, then start it with "
                    "tfs_grpc_port=...",
                    status=409,
                )
            if workers is not None and current.workers != workers:
                warn(f"the server running for {root} has {current.workers} worker(s), not "
                     f"{workers}; nbd.server.stop() it first to change that")  # fmt: skip
            return current
        extra = [f"--max-request-bytes={max_request_bytes}"] if max_request_bytes else []
        extra += [f"--tfs-grpc-port={tfs_grpc_port}"] if tfs_grpc_port is not None else []
        extra += [f"--allow-origin={origin}" for origin in allowed_origins]
        extra += [f"--workers={workers}"] if workers is not None else []
        before = _last_state(root).get("http_url")
        started = _start(root, host, http_port, grpc_port, token, extra, timeout)
        if before and http_port is None and before != started.http_url:
            warn(
                f"the local server moved from {before} to {started.http_url} (another process "
                "holds its old port): snippets and cards made before point at the old URL; "
                "Deployment objects follow the server"
            )
        return started


@contextlib.contextmanager
def _starting(root: Path) -> Iterator[None]:
    import fcntl

    with (root / START_LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _start(
    root: Path,
    host: str,
    http_port: int | None,
    grpc_port: int | None,
    token: str | None,
    extra: list[str],
    timeout: float,
) -> ServerStatus:
    last = _last_state(root)  # after a crash, come back on the same URLs
    http_port = _port(http_port, last.get("http_port"), PREFERRED_PORTS[0], host)
    grpc_port = _port(grpc_port, last.get("grpc_port"), PREFERRED_PORTS[1], host)
    command = [*_isolated_python(), str(root), "--host", host,
               "--http-port", str(http_port), "--grpc-port", str(grpc_port), *extra]  # fmt: skip
    env = {**os.environ, **({"NBDEPLOY_TOKEN": token} if token else {})}
    log_path = root / LOG_FILE
    pid = _spawn_detached(command, env, log_path)
    return _wait_started(root, pid, log_path, timeout)


def _isolated_python() -> list[str]:
    """``python -I`` running the server, with this nbdeploy's folder as the one path of
    its own: the notebook's folder (a local ``click.py``), PYTHONPATH and user site
    packages stay out of the server."""
    package_root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, {package_root!r}); "
            "from nbdeploy.server.process import main; sys.exit(main())")  # fmt: skip
    return [sys.executable, "-I", "-c", code]


def _spawn_detached(command: list[str], env: dict[str, str], log_path: Path) -> int:
    """Launch in a new session, output to ``log_path``; no Popen object to outlive us."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(command[0], command, env, file_actions=actions, setsid=True)


def _port(requested: int | None, last: int | None, preferred: int, host: str) -> int:
    """The port to listen on: the one asked for; else the one this repository's server
    had (waiting briefly for a killed server's socket to be released); else ``preferred``
    when free; else 0 (any free port)."""
    if requested is not None:
        return requested
    if last:
        deadline = time.monotonic() + RECLAIM_SECONDS
        while not _free(last, host):
            if time.monotonic() > deadline:
                log.warning("port %d, which this repository's server had, is taken by "
                            "another process; the server moves to another port", last)  # fmt: skip
                return 0
            time.sleep(0.1)
        return last
    return preferred if _free(preferred, host) else 0


def _free(port: int, host: str) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host if ":" not in host else "127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_started(root: Path, pid: int, log_path: Path, timeout: float) -> ServerStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = _exit_code(pid)
        if code is not None:
            raise ServerError(f"the server exited with code {code}:\n{_tail(log_path)}")
        current = status(root)
        if current.running and current.pid == pid:
            return current
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    _exit_code(pid)
    raise ServerError(f"the server did not answer within {timeout:.0f}s:\n{_tail(log_path)}")


def _exit_code(pid: int) -> int | None:
    """Reap ``pid`` if it is our child and has exited; its exit code, else ``None``."""
    try:
        done, code = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by another kernel): nothing to reap
        return None
    return os.waitstatus_to_exitcode(code) if done else None


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def status(
    repository: str | os.PathLike[str] | None = None, *, models: bool = True
) -> ServerStatus:
    """Is a server serving ``repository``, where, and with which models?

    Args:
        repository: The model repository (default: :func:`default_repository`).
        models: Ask the server for its index (one call, which also proves it answers);
            ``False`` trusts its state file and live process, and asks nothing.
    """
    root = resolve(repository)
    state = read_state(root)
    if state is None:
        return ServerStatus(False, root)
    rows: list[dict[str, str]] = []
    if models:
        try:
            with LocalServer(state["http_url"], token=state.get("token"), timeout=30) as server:
                rows = server.index()
        except ServerError:
            return ServerStatus(False, root)
    return ServerStatus(
        True, root, state["pid"], state["http_url"], state["grpc_url"], state["metrics_url"],
        rows, state.get("token"), state.get("tfs_grpc_url") or "", state.get("workers", 1),
    )  # fmt: skip


def registry() -> Path:
    """Where every running server of this user leaves a note (its repository), so any
    process — another kernel, the Jupyter server behind the sidebar — can find servers
    started with any repository: ``$XDG_RUNTIME_DIR/nbdeploy-servers`` (or under
    ``~/.local/share/nbdeploy`` where there is no runtime dir)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path("~/.local/share/nbdeploy").expanduser()
    return base / "nbdeploy-servers"


def running() -> list[ServerStatus]:
    """Every live server of this user, whatever its repository: the default repository's
    first, then the most recently started. Notes of dead servers are removed."""
    roots: list[tuple[float, Path]] = []
    with contextlib.suppress(OSError):
        for note in registry().glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                if not _alive(int(note.stem)):
                    note.unlink()
                    continue
                roots.append(
                    (note.stat().st_mtime, Path(json.loads(note.read_text())["repository"]))
                )
    default = resolve()
    newest = [root for _, root in sorted(roots, reverse=True) if root != default]
    found = [status(root, models=False) for root in dict.fromkeys([default, *newest])]
    return [s for s in found if s.running]


def resolve(repository: str | os.PathLike[str] | None = None) -> Path:
    """The repository folder, absolute (default: :func:`default_repository`)."""
    return Path(repository or default_repository()).expanduser().resolve()


def stop(repository: str | os.PathLike[str] | None = None, *, timeout: float = 15.0) -> bool:
    """Stop the server of ``repository``; returns whether one was running.

    Models stay in the repository: the next :func:`start` serves them again.
    """
    root = resolve(repository)
    state = read_state(root)
    if state is None:
        return False
    pid = int(state["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    _exit_code(pid)
    (root / STATE_FILE).unlink(missing_ok=True)
    return True


def read_state(root: Path) -> dict[str, Any] | None:
    """The state file of a live server process, or ``None`` (stale files are ignored)."""
    state = _last_state(root)
    pid = int(state.get("pid", 0))
    if _alive(pid):
        return state
    if pid > 0:
        _exit_code(pid)  # reap it if it was our child: no <defunct> left behind
    return None


def _last_state(root: Path) -> dict[str, Any]:
    """The state file as written, even if its server has died (``{}`` if none)."""
    try:
        state: dict[str, Any] = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) is not alive.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True
