"""How the worker processes of one server keep the state they share consistent.

Each worker listens on a Unix socket of its own in a private folder (``<i>.sock``). A
worker that changes shared state (a model load, unload, traffic change, a shared memory
region, trace or log settings) does it itself, then tells every other worker and waits
for each to answer before its own call returns: a promote is seen by every worker when
the client gets its answer. Messages are length-prefixed JSON (``{"op": ..., ...}``);
the answer is ``{"ok": true, "data": ...}`` or ``{"error": "..."}``. Questions go the
same way (:meth:`Peers.ask_all`): the live view and the latency summary gather every
worker's recent requests.

Changes to one model are serialised across workers by an exclusive lock on a file in
the same folder (:meth:`Peers.model_lock`), taken before the worker's own lock for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ServerError

log = logging.getLogger(__name__)

__all__ = ["Handler", "Peers", "WorkerPlace"]

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
_HEADER = struct.Struct("!I")
CONNECT_S = 60.0  # a worker still starting gets this long to open its socket
ANSWER_S = 600.0  # and this long to apply a change (loading a large model takes a while)


@dataclass(frozen=True)
class WorkerPlace:
    """Where one worker stands among its server's workers.

    Attributes:
        index: This worker's number, from 0.
        count: How many workers the server runs.
        folder: The private folder of the workers' sockets and locks.
    """

    index: int
    count: int
    folder: Path


class Peers:
    """This worker's end of the channel between the server's workers."""

    def __init__(self, place: WorkerPlace) -> None:
        self.place = place
        self._server: asyncio.AbstractServer | None = None

    async def listen(self, handler: Handler) -> None:
        """Answer the other workers' messages with ``handler`` (before serving clients)."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                message = await _read(reader)
                try:
                    reply: dict[str, Any] = {"ok": True, "data": await handler(message)}
                except Exception as err:  # the sender reports it; this worker goes on
                    log.exception("worker %d could not apply %s", self.place.index, message)
                    reply = {"error": str(err)}
                await _write(writer, reply)
            finally:
                writer.close()

        path = self._socket(self.place.index)
        path.unlink(missing_ok=True)  # a worker restarted in its place
        self._mark("ready").unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(answer, str(path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._socket(self.place.index).unlink(missing_ok=True)

    async def tell_all(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every other worker; return once each has applied it.

        Raises:
            ServerError: A worker answered with an error or could not be reached.
        """
        others = [i for i in range(self.place.count) if i != self.place.index]
        answers = await asyncio.gather(*(self._tell(i, message) for i in others),
                                       return_exceptions=True)  # fmt: skip
        failed = [f"worker {i}: {_failure(a)}" for i, a in zip(others, answers, strict=True)
                  if _failure(a)]  # fmt: skip
        if failed:
            raise ServerError(
                f"the change was made, but not every worker process applied it "
                f"({'; '.join(failed)}); see the server log, or restart the server",
                status=500,
            )

    async def ask_all(self, message: dict[str, Any]) -> list[Any]:
        """Every other worker's answer to ``message`` (a question, not a change: a worker
        that cannot answer is left out, and the log says why)."""
        others = [i for i in range(self.place.count) if i != self.place.index]
        answers = await asyncio.gather(*(self._tell(i, message) for i in others),
                                       return_exceptions=True)  # fmt: skip
        for i, answer in zip(others, answers, strict=True):
            if _failure(answer):
                log.warning("worker %d did not answer %s: %s", i, message["op"], _failure(answer))
        return [a["data"] for a in answers if isinstance(a, dict) and not _failure(a)]

    async def _tell(self, index: int, message: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await self._connect(index)
        try:
            await _write(writer, message)
            return await asyncio.wait_for(_read(reader), ANSWER_S)
        finally:
            writer.close()

    async def _connect(self, index: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        path = str(self._socket(index))
        deadline = asyncio.get_running_loop().time() + CONNECT_S
        while True:
            try:
                return await asyncio.open_unix_connection(path)
            except (FileNotFoundError, ConnectionRefusedError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)  # still starting, or being restarted

    @contextlib.asynccontextmanager
    async def model_lock(self, name: str) -> AsyncIterator[None]:
        """Hold the lock of model ``name`` across workers (file lock; waits in a thread,
        so this worker keeps answering its peers meanwhile)."""
        fd = os.open(self.place.folder / f"model-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def mark_started(self) -> None:
        """Tell the supervisor this worker listens (:func:`.workers.supervise` waits)."""
        self._mark("started").touch()

    def mark_ready(self) -> None:
        """Note that this worker has restored the repository's models."""
        self._mark("ready").touch()

    def all_ready(self) -> bool:
        """Whether every worker has restored the repository's models."""
        return all(self._mark("ready", i).exists() for i in range(self.place.count))

    def _mark(self, what: str, index: int | None = None) -> Path:
        return self.place.folder / f"{self.place.index if index is None else index}.{what}"

    def _socket(self, index: int) -> Path:
        return self.place.folder / f"{index}.sock"


def _failure(answer: dict[str, Any] | BaseException) -> str:
    """Why a worker's answer is not one ("" if it is)."""
    if isinstance(answer, BaseException):
        return f"{type(answer).__name__}: {answer}"
    return str(answer.get("error", ""))


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    message: dict[str, Any] = json.loads(await reader.readexactly(size))
    return message


async def _write(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    writer.write(_HEADER.pack(len(body)) + body)
    await writer.drain()
