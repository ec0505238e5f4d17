"""A server of several worker processes: each runs the whole server (HTTP, gRPC, every
model) on its own event loop and its own core, and they share the listening ports
(``SO_REUSEPORT``: the kernel spreads new connections between them), the repository,
the counters (:mod:`.metrics`) and every change to what is served (:mod:`.peers`).

This process only supervises: it holds the repository's lock and the ports (bound, not
listening, so a port asked for as 0 is chosen once for all), starts the workers, writes
the state file once all of them listen, and stops them all on SIGTERM or SIGINT.

A worker that dies stops the whole server (the log says which and how): restarted
alone it would come back from the repository while the others kept what they had, and
a change it was making when it died would reach only some of them. Workers die with
their supervisor (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the server leaves none
serving. ``nbd.server.start`` brings the server back from the repository.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path

from .._deps import require
from ..errors import ServerError
from .faults import SUPERVISOR_PID
from .peers import WorkerPlace
from .process import (
    ServerOptions,
    announce_server,
    bound_socket,
    serve_in_this_process,
    state_of,
    withdraw,
)
from .repository import Repository

log = logging.getLogger(__name__)

__all__ = ["supervise"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
START_S = 120.0  # how long the workers get to listen
STOP_S = 20.0  # how long they get to finish what they are doing


def supervise(options: ServerOptions, folder: Path) -> None:
    """Run ``options.workers`` worker processes until SIGTERM or SIGINT (blocking).

    Args:
        options: The server's options (its ports may be 0: chosen here).
        folder: A private folder for the workers' sockets, locks and counters.
    """
    if options.tfs_grpc_port is not None:  # said here, not once per worker
        require("tensorflow_serving", extra="tfserving",
                feature="TF Serving's gRPC API (tfs_grpc_port)",
                package="tensorflow-serving-api")  # fmt: skip
    held = _hold_ports(options)
    options = replace(options, http_port=_port(held[0]), grpc_port=_port(held[1]),
                      tfs_grpc_port=_port(held[2]) if len(held) > 2 else None)  # fmt: skip
    repository = Repository(options.repository)
    repository.clear_staging()  # once, before any worker takes uploads
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: stopping.append(number))
    workers = [_start(options, WorkerPlace(i, options.workers, folder)) for i in
               range(options.workers)]  # fmt: skip
    try:
        _wait_listening(workers, folder, stopping)
        if stopping:
            return
        announce_server(repository, state_of(options, options.http_port, options.grpc_port,
                                             options.tfs_grpc_port))  # fmt: skip
        log.warning("%d worker processes (onnxruntime: %d intra-op thread(s) each)",
                    options.workers, options.session_threads)  # fmt: skip
        _watch(workers, stopping)
    finally:
        withdraw(repository)
        _stop(workers)
        for sock in held:
            sock.close()


def _hold_ports(options: ServerOptions) -> list[socket.socket]:
    wanted = [options.http_port, options.grpc_port]
    if options.tfs_grpc_port is not None:
        wanted.append(options.tfs_grpc_port)
    try:
        return [bound_socket(options.host, port, reuse_port=True) for port in wanted]
    except OSError as err:
        raise ServerError(f"cannot listen on {options.host}: {err}; choose other ports, or "
                          "0 for any free one", status=409) from err  # fmt: skip


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _start(options: ServerOptions, place: WorkerPlace) -> BaseProcess:
    (place.folder / f"{place.index}.started").unlink(missing_ok=True)
    process = multiprocessing.get_context("spawn").Process(
        target=_worker, args=(options, place), name=f"nbdeploy-worker-{place.index}"
    )
    process.start()
    return process


def _worker(options: ServerOptions, place: WorkerPlace) -> None:
    """A worker process's life: the server on its loop, until SIGTERM."""
    _die_with_supervisor()
    form = f"%(asctime)s worker {place.index} %(name)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=form)
    serve_in_this_process(options, place)


def _die_with_supervisor() -> None:
    """SIGKILL this worker when its supervisor dies, however it dies (Linux's
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere a supervisor's SIGTERM stops it)."""
    parent = multiprocessing.parent_process()
    supervisor = parent.pid if parent is not None and parent.pid else os.getppid()
    os.environ[SUPERVISOR_PID] = str(supervisor)
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before prctl took effect
        os._exit(1)


def _wait_listening(workers: list[BaseProcess], folder: Path, stopping: list[int]) -> None:
    deadline = time.monotonic() + START_S
    while not all((folder / f"{i}.started").exists() for i in range(len(workers))):
        dead = [w for w in workers if not w.is_alive()]
        if dead:
            raise ServerError(f"worker process {dead[0].name} exited with code "
                              f"{dead[0].exitcode} while starting; see the log above")  # fmt: skip
        if stopping or time.monotonic() > deadline:
            if not stopping:
                raise ServerError(f"the worker processes did not listen within {START_S:.0f} s")
            return
        time.sleep(0.02)


def _watch(workers: list[BaseProcess], stopping: list[int]) -> None:
    """Wait until asked to stop, or until a worker dies (then stop them all)."""
    while not stopping:
        time.sleep(0.2)
        dead = [w for w in workers if not w.is_alive()]
        if dead and not stopping:
            code = dead[0].exitcode or 0
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise ServerError(
                f"{dead[0].name} {how} (signal 9 is often the out-of-memory killer: each "
                "worker holds every model); the server stopped so that its workers never "
                "disagree. Start it again, with fewer workers if memory is short",
                status=500,
            )


def _stop(workers: list[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()  # SIGTERM: the worker finishes its requests and exits
    deadline = time.monotonic() + STOP_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()
