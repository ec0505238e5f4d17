"""The server process: HTTP and gRPC (both on uvicorn; TF Serving's gRPC API on grpc.aio
when asked for) on one event loop over one dataplane, with a state file in the repository so
notebooks can find it again. With ``workers`` above 1 it runs that many such processes
sharing the listening ports (:mod:`.workers`).

Run it with ``nbdeploy serve REPO`` or ``python -m nbdeploy.server REPO``; notebooks use
:func:`nbdeploy.server.start`, which launches this detached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NbDeployError, ServerError
from .layout import LOCK_FILE
from .peers import Peers, WorkerPlace
from .repository import Repository
from .security import DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_REQUEST_BYTES, Guard

if TYPE_CHECKING:
    from .dataplane import DataPlane

log = logging.getLogger(__name__)

__all__ = ["ServerOptions", "run"]


@dataclass(frozen=True)
class ServerOptions:
    """How a server listens and what it serves.

    Attributes:
        repository: The model repository folder.
        host: Address to listen on; anything but loopback needs ``token``.
        http_port: HTTP port (0: any free port).
        grpc_port: gRPC port (0: any free port).
        tfs_grpc_port: Port for TF Serving's gRPC API (0: any free port); ``None``: off,
            and tensorflow is never imported.
        token: Bearer token clients must send.
        allowed_hosts: Extra ``Host`` names accepted without a token.
        max_request_bytes: Largest request accepted.
        allowed_origins: Web origins whose pages may call the server (besides loopback).
        max_json_bytes: Largest inference request whose tensors are all JSON.
        threads: Threads that run models (in each worker process).
        workers: Worker processes answering requests, sharing the ports (``SO_REUSEPORT``)
            and every change to the served models (default: :func:`default_workers`).
    """

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    tfs_grpc_port: int | None = None
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    allowed_origins: tuple[str, ...] = ()
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    threads: int = field(default_factory=lambda: max(4, 2 * (os.cpu_count() or 1)))
    workers: int = field(default_factory=lambda: default_workers())

    @property
    def session_threads(self) -> int:
        """onnxruntime intra-op threads per session: the cores shared out between the
        workers (0, onnxruntime's own choice of one per core, with a single worker)."""
        return 0 if self.workers == 1 else max(1, cores() // self.workers)

    @property
    def guard(self) -> Guard:
        return Guard(
            self.token, frozenset(self.allowed_hosts), self.max_request_bytes,
            frozenset(self.allowed_origins), self.max_json_bytes,
        )  # fmt: skip


MAX_DEFAULT_WORKERS = 8  # each worker holds its own copy of every model


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """One worker process per core, at most ``MAX_DEFAULT_WORKERS``: a single Python
    process parses, encodes and dispatches on one core however many the machine has."""
    return max(1, min(cores(), MAX_DEFAULT_WORKERS))


def run(options: ServerOptions) -> None:
    """Serve until SIGTERM or SIGINT (blocking)."""
    options.guard.check_bind(options.host)
    if options.workers < 1:
        raise ServerError(f"workers must be 1 or more, not {options.workers}")
    lock = _claim(Path(options.repository))  # held for the process's life (even kill -9 frees it)
    shared = Path(tempfile.mkdtemp(prefix="nbdeploy-server-"))  # mode 0700: this user's only
    # Before prometheus-client is imported: every process counts into files here.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared / "metrics")
    (shared / "metrics").mkdir()
    try:
        if options.workers == 1:
            serve_in_this_process(options)
        else:
            from .workers import supervise

            supervise(options, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        lock.close()


def serve_in_this_process(options: ServerOptions, place: WorkerPlace | None = None) -> None:
    """Run one server (or one worker of a server, at ``place``) on this process's loop."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # the standard loop works, a little slower
        pass
    asyncio.run(_serve(options, place))


def _claim(root: Path) -> Any:
    """One server per repository: an exclusive lock on ``<repo>/.server.lock``."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    handle = (root / LOCK_FILE).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ServerError(
            f"another nbdeploy server already serves {root}; use nbd.server.status() to find "
            "it, or nbd.server.stop() first",
            status=409,
        ) from None
    return handle


async def _serve(options: ServerOptions, place: WorkerPlace | None) -> None:
    import uvicorn

    from .dataplane import DataPlane
    from .grpc_api import build_front_end
    from .http_api import build_app

    repository = Repository(options.repository)
    peers = Peers(place) if place is not None else None
    dataplane = DataPlane(repository, threads=options.threads, peers=peers,
                          session_threads=options.session_threads)  # fmt: skip
    if peers is not None:  # before any client: a change made meanwhile reaches this worker
        await peers.listen(dataplane.apply_peer_change)
    shared = place is not None
    http_socket = _bind(options.host, options.http_port, reuse_port=shared)
    grpc_socket = _bind(options.host, options.grpc_port, reuse_port=shared)
    grpc_port = grpc_socket.getsockname()[1]
    servers: list[Any] = [build_front_end(dataplane, options.guard, grpc_socket)]
    tfs_port = None
    if options.tfs_grpc_port is not None:
        from . import tfs_grpc  # imports tensorflow: only when asked for

        tfs_address = f"{_url_host(options.host)}:{options.tfs_grpc_port}"
        tfs_server, tfs_port = tfs_grpc.build_server(dataplane, options.guard, tfs_address,
                                                     reuse_port=shared)  # fmt: skip
        servers.append(tfs_server)
    restoring = dataplane.begin_restore(clear_staging=not shared)
    app = build_app(dataplane, options.guard)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, http="httptools", loop="none"
    )
    http = uvicorn.Server(config)
    for server in servers:
        await server.start()
    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal into the
    # handlers it found: make those no-ops, so the cleanup below runs and we exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    task = asyncio.create_task(http.serve(sockets=[http_socket]))
    while not http.started and not task.done():
        await asyncio.sleep(0.01)
    state = state_of(options, http_socket.getsockname()[1], grpc_port, tfs_port)
    announce = http.started and place is None  # a worker's supervisor announces the server
    if announce:
        announce_server(repository, state)
    elif peers is not None and http.started:
        peers.mark_started()
    # Live at once; the models of the last run come back one by one, each ready as it
    # loads (requests for one still loading get a 503 that says so).
    restore = asyncio.create_task(_restore(dataplane, len(restoring)))
    try:
        await task
    finally:
        restore.cancel()
        if announce:
            withdraw(repository)
        for server in servers:
            await server.stop(grace=2)
        await dataplane.close()
        if peers is not None:
            await peers.close()


def announce_server(repository: Repository, state: dict[str, Any]) -> None:
    """Write the state file and the note in the registry of running servers."""
    _write_state(repository, state)
    _register(repository)
    tfs = f"; TF Serving's gRPC on {state['tfs_grpc_url']}" if state["tfs_grpc_port"] else ""
    log.warning("serving %s on %s and %s%s", repository.root, state["http_url"],
                state["grpc_url"], tfs)  # fmt: skip


def withdraw(repository: Repository) -> None:
    """Remove what :func:`announce_server` wrote."""
    from .control import registry

    repository.state_file.unlink(missing_ok=True)
    (registry() / f"{os.getpid()}.json").unlink(missing_ok=True)


async def _restore(dataplane: DataPlane, count: int) -> None:
    started = time.perf_counter()
    await dataplane.restore()
    if count:
        log.warning("restored %d model(s) in %.1f s", count, time.perf_counter() - started)


def _bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    sock = bound_socket(host, port, reuse_port=reuse_port)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port``; with ``reuse_port``, worker processes bind the
    same port and the kernel spreads the connections between them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def state_of(
    options: ServerOptions, http_port: int, grpc_port: int, tfs_grpc_port: int | None
) -> dict[str, Any]:
    host = _url_host("127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host)
    return {
        "pid": os.getpid(),
        "host": options.host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "http_url": f"http://{host}:{http_port}",
        "grpc_url": f"{host}:{grpc_port}",
        "tfs_grpc_port": tfs_grpc_port,
        "tfs_grpc_url": f"{host}:{tfs_grpc_port}" if tfs_grpc_port is not None else "",
        "metrics_url": f"http://{host}:{http_port}/metrics",
        "repository": str(Path(options.repository).resolve()),
        "token": options.token,
        "max_request_bytes": options.max_request_bytes,
        "max_json_bytes": options.max_json_bytes,
        "workers": options.workers,
    }


def _register(repository: Repository) -> Path:
    """A note in the user's registry of running servers (``control.running``); a server
    killed without cleanup leaves a stale note, which readers skip (its pid is dead)."""
    from .control import registry

    folder = registry()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    note = folder / f"{os.getpid()}.json"
    note.write_text(json.dumps({"repository": str(repository.root), "pid": os.getpid()}))
    return note


def _write_state(repository: Repository, state: dict[str, Any]) -> None:
    """The state file is readable by its owner only: it carries the token."""
    temp = repository.state_file.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2)
    temp.replace(repository.state_file)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's command-line options (shared by ``nbdeploy serve``)."""
    parser.add_argument("repository", type=Path, help="model repository folder (Triton layout)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (0: any free)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: any free)")
    parser.add_argument(
        "--tfs-grpc-port", type=int, default=None, metavar="PORT",
        help="also serve TF Serving's gRPC API (PredictionService, ModelService) on PORT "
        "(0: any free; TF Serving's own is 8500); needs pip install 'nbdeploy[tfserving]'",
    )  # fmt: skip
    parser.add_argument(
        "--allow-host", action="append", default=[], help="extra Host name to accept"
    )
    parser.add_argument(
        "--allow-origin", action="append", default=[],
        help="web origin (https://host:port) whose pages may call the server",
    )  # fmt: skip
    parser.add_argument(
        "--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest request body accepted",
    )  # fmt: skip
    parser.add_argument(
        "--max-json-bytes", type=int, default=DEFAULT_MAX_JSON_BYTES,
        help="largest inference request whose tensors are all JSON",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="worker processes sharing the ports (default: one per core, at most "
        f"{MAX_DEFAULT_WORKERS}; each holds its own copy of every model)",
    )  # fmt: skip


def options_from(args: argparse.Namespace) -> ServerOptions:
    """Options from parsed arguments; the token comes from ``$NBDEPLOY_TOKEN`` (never argv,
    which other users can read in the process list)."""
    return ServerOptions(
        repository=args.repository, host=args.host, http_port=args.http_port,
        grpc_port=args.grpc_port, tfs_grpc_port=args.tfs_grpc_port,
        token=os.environ.get("NBDEPLOY_TOKEN") or None,
        allowed_hosts=tuple(args.allow_host), max_request_bytes=args.max_request_bytes,
        allowed_origins=tuple(args.allow_origin), max_json_bytes=args.max_json_bytes,
        workers=args.workers or default_workers(),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Serve a repository in the foreground until interrupted."""
    parser = argparse.ArgumentParser(prog="nbdeploy serve", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        run(options_from(parser.parse_args(argv)))
    except NbDeployError as err:
        print(f"nbdeploy serve: {err}", file=sys.stderr)
        return 1
    return 0
