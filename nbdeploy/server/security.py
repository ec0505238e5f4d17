"""Who may talk to the server, and how much they may send.

* A bearer token, when set, is required on every call but the health probes (HTTP
  ``Authorization: Bearer …`` and gRPC ``authorization`` metadata alike). The server
  refuses to listen beyond loopback without one.
* Without a token, the ``Host`` header must be a loopback name (or one the server was
  told to accept): a web page can reach 127.0.0.1 through DNS rebinding, but it cannot
  make the browser send ``Host: localhost``.
* Bodies larger than ``max_request_bytes`` are refused from ``Content-Length``, before
  they are read (and counted as they arrive when the length is not announced).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "LOOPBACK_HOSTS", "Guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = ("/v2/health/",)  # probes (Kubernetes, load balancers) carry no token


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Guard:
    """The server's admission rules.

    Args:
        token: Bearer token required on every call (but health); ``None`` for none.
        allowed_hosts: Extra ``Host`` names accepted without a token.
        max_request_bytes: Largest request body accepted.
    """

    token: str | None = None
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def check_bind(self, host: str) -> None:
        """Refuse to listen beyond loopback without a token."""
        if not is_loopback(host) and not self.token:
            raise ConfigError(
                f"refusing to listen on {host} without a token: anyone who can reach it could "
                "load models and read their answers. Pass token=... (clients then send "
                "'Authorization: Bearer <token>') or keep the default host 127.0.0.1."
            )

    def token_ok(self, presented: str | None) -> bool:
        """Whether an ``Authorization`` value carries the token (always, when none is set)."""
        if not self.token:
            return True
        scheme, _, value = (presented or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), self.token)

    def host_ok(self, host_header: str) -> bool:
        if self.token:
            return True
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return host in LOOPBACK_HOSTS or host in self.allowed_hosts or is_loopback(host)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """An ASGI app that applies these rules before ``app`` sees a request."""
        guard = self

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            refusal = guard._refusal(scope["path"], headers)
            if refusal:
                await _reply(send, *refusal)
                return
            if "content-length" not in headers and scope["method"] in ("POST", "PUT"):
                body = await _read_limited(receive, guard.max_request_bytes)
                if body is None:
                    await _reply(send, 413, guard._too_large())
                    return
                receive = _replay(body)
            await app(scope, receive, send)

        return guarded

    def _refusal(self, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        if not self.host_ok(headers.get("host", "")):
            return 403, (
                f"Host '{headers.get('host', '')}' is not accepted; use localhost/127.0.0.1 or "
                "start the server with allowed_hosts=[...]"
            )
        if not path.startswith(OPEN_PATHS) and not self.token_ok(headers.get("authorization")):
            return 401, "this server needs 'Authorization: Bearer <token>'"
        length = headers.get("content-length", "0")
        if not length.isdigit():
            return 400, f"Content-Length {length!r} is not a number"
        if int(length) > self.max_request_bytes:
            return 413, self._too_large()
        return None

    def _too_large(self) -> str:
        return (
            f"the request is larger than the server's limit of {self.max_request_bytes} bytes; "
            "send smaller batches or start the server with a larger max_request_bytes"
        )


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_limited(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
