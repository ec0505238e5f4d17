"""gRPC's wire protocol over uvicorn's HTTP/2 (its ``zttp`` engine, parsed in Zig): the
transport of Triton's ``GRPCInferenceService``.

Why not ``grpc.aio``: with a handler that does nothing, one process answers 5,170 calls
a second on it and 8,760 on this module (``benchmarks/results/grpc_transports.md``);
with a model's work added, the server answers more gRPC calls than Triton instead of
0.6-0.8x its count (``benchmarks/results/serve.md``). gRPC over HTTP/2 is
small: each message is framed as ``[compressed flag][4-byte length][protobuf]``, the
method is the path, and the status travels in the trailers (``grpc-status``,
``grpc-message``). Messages are parsed by the protobuf stubs tritonclient ships.

zttp 0.0.35 ends a connection with ENHANCE_YOUR_CALM at its 4,096th stream, so each
connection is recycled well before, the way servers enforce a maximum connection age:
a GOAWAY that lets the calls in flight finish, after which a client opens a new
connection (every gRPC client does this on its own).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import grpc
import uvicorn
from google.protobuf.message import DecodeError, Message
from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol
from uvicorn.server import ServerState

from ..errors import ProtocolError
from .grpc_common import STATUS_CODES, internal_error
from .security import TOKEN_REFUSAL, Guard

log = logging.getLogger(__name__)

__all__ = ["GrpcFrontEnd", "Method", "WireContext"]

RECYCLE_AFTER = 3_800  # streams per connection (zttp's cap, 4,096, less those in flight)
_REFUSED_STREAM = 0x7  # HTTP/2: not processed, safe for the client to retry elsewhere
_HEADER = struct.Struct(">BI")  # compressed flag, message length
_RESPONSE_HEADERS = [(b"content-type", b"application/grpc"),
                     (b"grpc-accept-encoding", b"identity,deflate,gzip")]  # fmt: skip
_DECOMPRESS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}  # zlib's wbits


class WireContext:
    """What a service method sees of its call: the peer's address. A method ends a call
    with a status by raising :class:`ProtocolError` (its HTTP status maps to the code)."""

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self._client = scope.get("client")

    def peer(self) -> str:
        """The client as gRPC writes it: ``ipv4:127.0.0.1:5000`` (``unix:`` for a socket)."""
        if not self._client:
            return "unix:"
        host, port = self._client
        return f"{'ipv6' if ':' in host else 'ipv4'}:{host}:{port}"


@dataclass(frozen=True)
class Method:
    """One method of a service: its request type, its handler, and whether the client
    streams (a streaming method answers with a stream too)."""

    request: type[Message]
    handler: Callable[..., Any]
    streaming: bool = False


class GrpcApp:
    """The ASGI application that answers gRPC calls: ``methods`` by their path
    (``/package.Service/Method``), behind the guard's token (but for ``open`` paths). A
    :class:`ProtocolError` becomes its status's gRPC code; any other exception is a bug
    of ours, logged and answered INTERNAL."""

    def __init__(self, methods: Mapping[str, Method], guard: Guard,
                 open_paths: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self._methods = dict(methods)
        self._guard = guard
        self._open = open_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        if scope["method"] != "POST" or not headers.get(b"content-type", b"").startswith(
            b"application/grpc"
        ):
            await _plain(send, 415, b"this port speaks gRPC (POST, content-type application/grpc)")
            return
        call = _Call(receive, send, headers.get(b"grpc-encoding", b"identity"),
                     self._guard.max_request_bytes)  # fmt: skip
        try:
            method = self._check(scope["path"], headers)
            await call.start()
            if method.streaming:
                await call.stream(method, WireContext(scope))
            else:
                request = method.request.FromString(await call.one_message())
                await call.answer(await method.handler(request, WireContext(scope)))
        except ProtocolError as err:
            code = STATUS_CODES.get(err.status, grpc.StatusCode.INVALID_ARGUMENT)
            await call.finish(code, str(err))
        except DecodeError:
            await call.finish(grpc.StatusCode.INTERNAL, "the request is not valid protobuf")
        except Exception as err:  # a bug of ours: logged, answered without internals
            log.error("%s failed", scope["path"], exc_info=err)
            await call.finish(grpc.StatusCode.INTERNAL, internal_error(err))
        else:
            await call.finish(grpc.StatusCode.OK)

    def _check(self, path: str, headers: Mapping[bytes, bytes]) -> Method:
        method = self._methods.get(path)
        if method is None:
            raise ProtocolError(f"Method not found: {path}", status=501)
        presented = headers.get(b"authorization")
        if path not in self._open and not self._guard.token_ok(
            presented.decode("latin-1") if presented is not None else None
        ):
            raise ProtocolError(TOKEN_REFUSAL, status=401)
        return method


class _Call:
    """One call's two directions: length-prefixed messages in, messages and a status out."""

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]],
                 send: Callable[[dict[str, Any]], Awaitable[None]], encoding: bytes,
                 limit: int) -> None:  # fmt: skip
        self._receive, self._send = receive, send
        self._encoding, self._limit = encoding, limit
        self._buffer = bytearray()
        self._ended = False  # the client has sent its last bytes
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self._send({"type": "http.response.start", "status": 200,
                              "headers": _RESPONSE_HEADERS, "trailers": True})  # fmt: skip

    async def one_message(self) -> bytes:
        message = await self._next_message()
        if message is None:
            raise ProtocolError("the call carried no request message", status=500)
        return message

    async def answer(self, response: Message) -> None:
        """One response message (:meth:`finish` ends the body and sends the status)."""
        data = response.SerializeToString()
        await self._send({"type": "http.response.body", "body": _HEADER.pack(0, len(data)) + data,
                          "more_body": True})  # fmt: skip

    async def stream(self, method: Method, context: WireContext) -> None:
        """A bidirectional stream: requests as they arrive, each answer as it is ready."""

        async def requests() -> AsyncIterator[Message]:
            while (message := await self._next_message()) is not None:
                yield method.request.FromString(message)

        async for response in method.handler(requests(), context):
            await self.answer(response)

    async def finish(self, code: grpc.StatusCode, details: str = "") -> None:
        await self.start()  # a call refused before it started still answers in trailers
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        trailers = [(b"grpc-status", str(code.value[0]).encode())]
        if details:
            trailers.append((b"grpc-message", quote(details, safe=" ").encode()))
        await self._send({"type": "http.response.trailers", "headers": trailers})

    async def _next_message(self) -> bytes | None:
        """The next whole message, decompressed; ``None`` once the client is done."""
        while True:
            if len(self._buffer) >= _HEADER.size:
                compressed, length = _HEADER.unpack_from(self._buffer)
                if length > self._limit:
                    raise ProtocolError(f"Received message larger than max ({length} vs. "
                                        f"{self._limit})", status=413)  # fmt: skip
                if len(self._buffer) >= _HEADER.size + length:
                    data = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
                    del self._buffer[: _HEADER.size + length]
                    return self._decompress(data) if compressed else data
            if self._ended:
                if self._buffer:
                    raise ProtocolError("the call ended inside a message", status=500)
                return None
            event = await self._receive()
            if event["type"] == "http.disconnect":
                raise ProtocolError("the client went away", status=499)
            self._buffer += event.get("body", b"")
            self._ended = not event.get("more_body", False)

    def _decompress(self, data: bytes) -> bytes:
        wbits = _DECOMPRESS.get(self._encoding)
        if wbits is None:
            name = self._encoding.decode("latin-1")
            raise ProtocolError(f"compression {name!r} is not supported; use gzip or deflate",
                                status=501)  # fmt: skip
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, self._limit + 1)  # a bomb stops at the limit
        except zlib.error as err:
            raise ProtocolError(f"could not decompress: {err}", status=500) from err
        if len(out) > self._limit:
            raise ProtocolError(f"Received message larger than max (more than {self._limit} "
                                "bytes decompressed)", status=413)  # fmt: skip
        return out


async def _plain(send: Callable[[dict[str, Any]], Awaitable[None]], status: int,
                 text: bytes) -> None:  # fmt: skip
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
    await send({"type": "http.response.body", "body": text})


class _CoalescedWrites(asyncio.Transport):
    """A transport that sends what one turn of the event loop wrote as one ``send``:
    uvicorn writes a response's headers, message and trailers separately, three system
    calls where one does (a fifth of a worker's time on a small model, by py-spy)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))


class _Connection(ZttpH2Protocol):
    """uvicorn's HTTP/2 connection, its writes coalesced, recycled after
    :data:`RECYCLE_AFTER` streams."""

    _streams = 0
    _recycling = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CoalescedWrites(cast(asyncio.Transport, transport)))

    def handle_request(self, event: Any) -> None:
        if self._recycling:  # sent before the client read our GOAWAY: it retries them
            self.conn.stream(event.stream_id).reset(_REFUSED_STREAM)
            self.flush()
            return
        super().handle_request(event)
        self._streams += 1
        if self._streams >= RECYCLE_AFTER:
            self._recycling = True
            self.conn.close(0, event.stream_id)  # GOAWAY, NO_ERROR: finish these, then go
            self.flush()
            self.shutdown_requested = True  # closes once the calls in flight are answered

    def _close_connection(self) -> None:
        if self._recycling:  # the GOAWAY went out already: a second may not name more streams
            self.flush()
            self.transport.close()
            return
        super()._close_connection()


class GrpcFrontEnd:
    """A gRPC server on a listening socket (shared with other workers, or not), with the
    ``start``/``stop(grace)`` of ``grpc.aio``'s server."""

    def __init__(self, app: GrpcApp, sock: Any) -> None:
        self._config = uvicorn.Config(app, http=_Connection, lifespan="off", loop="none",
                                      log_level="warning", access_log=False,
                                      proxy_headers=False, timeout_keep_alive=300)  # fmt: skip
        self._config.load()
        self._state = ServerState()
        self._sock = sock
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(config=self._config, server_state=self._state, app_state={}),
            sock=self._sock,  # listening already (process._bind)
        )  # fmt: skip

    async def stop(self, grace: float) -> None:
        """Stop listening, let the calls in flight finish (up to ``grace`` seconds)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        deadline = asyncio.get_running_loop().time() + grace
        while self._state.tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for task in list(self._state.tasks):
            task.cancel()
