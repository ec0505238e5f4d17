"""Who may talk to the server, and how much they may send.

* A bearer token, when set, is required on every call but the health probes (HTTP
  ``Authorization: Bearer …`` and gRPC ``authorization`` metadata alike). The server
  refuses to listen beyond loopback without one.
* Without a token, the ``Host`` header must be a loopback name (or one the server was
  told to accept): a web page can reach 127.0.0.1 through DNS rebinding, but it cannot
  make the browser send ``Host: localhost``.
* A web page the user visits can still send requests to 127.0.0.1 itself (a form, or a
  ``no-cors`` fetch). Browsers mark those with an ``Origin`` header, so, as Jupyter does,
  a request whose ``Origin`` is neither the server's own, a loopback origin nor one it was
  told to accept is refused; and a body a browser may send cross-site without asking
  first (``text/plain``, form encodings) is refused, so any other cross-site POST needs a
  CORS preflight, which gets no grant. Clients outside browsers send no ``Origin``.
* Bodies larger than ``max_request_bytes`` are refused from ``Content-Length``, before
  they are read (and counted as they arrive when the length is not announced). Tensors
  sent as JSON numbers cost ~15x their text in memory while parsed, so an inference
  request that is all JSON has a lower limit, ``max_json_bytes``; binary tensor data
  (``Inference-Header-Content-Length``) and gRPC carry the rest.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "LOOPBACK_HOSTS",
    "TOKEN_REFUSAL",
    "Guard",
    "check_token",
]

# What a call without the server's token is told, over HTTP and gRPC alike.
TOKEN_REFUSAL = "this server needs 'Authorization: Bearer <token>'"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
DEFAULT_MAX_JSON_BYTES = 16 * 2**20
_JSON_TENSORS = re.compile(r"(/infer|:predict)$")  # routes whose JSON bodies carry tensors
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = ("/v2/health/",)  # probes (Kubernetes, load balancers) carry no token
# Content types a browser sends cross-site without a preflight (the "simple" requests).
SIMPLE_CONTENT_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: what an HTTP header can carry


def check_token(token: str | None) -> None:
    """Refuse a token that cannot travel in an HTTP header or gRPC metadata."""
    if token is not None and not _TOKEN.match(token):
        raise ConfigError(
            "the token must be printable ASCII without spaces (it travels in an "
            "'Authorization: Bearer <token>' header); generate one with "
            "secrets.token_urlsafe()"
        )


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
        allowed_origins: Web origins (``https://dash.example:8443``) whose pages may
            call the server, besides loopback ones.
        max_json_bytes: Largest inference request whose tensors are all JSON.
    """

    token: str | None = None
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES

    def __post_init__(self) -> None:
        check_token(self.token)

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
        # Bytes, not str: compare_digest refuses non-ASCII text (a header may carry any).
        secret = value.strip().encode("utf-8", "replace")
        return scheme.lower() == "bearer" and hmac.compare_digest(secret, self.token.encode())

    def origin_ok(self, origin: str | None, host_header: str) -> bool:
        """Whether a page of ``origin`` may call: no ``Origin`` (not a browser), the
        server's own, a loopback one, or one it was told to accept."""
        if origin is None:
            return True
        if origin in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
            hostname = parts.hostname or ""
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and (
            is_loopback(hostname) or parts.netloc == host_header
        )

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
            refusal = guard._refusal(scope["method"], scope["path"], headers)
            if refusal:
                await _reply(send, *refusal)
                return
            if "content-length" not in headers and scope["method"] in ("POST", "PUT"):
                limit = guard._limit(scope["path"], headers)
                body = await _read_limited(receive, limit)
                if body is None:
                    await _reply(send, 413, guard._too_large(limit))
                    return
                receive = _replay(body)
            await app(scope, receive, send)

        return guarded

    def _refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if not self.host_ok(host):
            return 403, (
                f"Host '{host}' is not accepted; use localhost/127.0.0.1 or "
                "start the server with allowed_hosts=[...]"
            )
        if not self.origin_ok(headers.get("origin"), host):
            return 403, (
                f"requests from web pages of origin '{headers['origin']}' are refused; start "
                "the server with allowed_origins=[...] to let that site call it"
            )
        if not path.startswith(OPEN_PATHS) and not self.token_ok(headers.get("authorization")):
            return 401, TOKEN_REFUSAL
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if method != "GET" and media_type in SIMPLE_CONTENT_TYPES:
            return 415, (
                f"Content-Type '{media_type}' is refused (web pages can send it to any site); "
                "send 'Content-Type: application/json' (or application/octet-stream with "
                "Inference-Header-Content-Length for binary tensors)"
            )
        length = headers.get("content-length", "0")
        if not (length.isascii() and length.isdigit()):
            return 400, f"Content-Length {length!r} is not a number"
        limit = self._limit(path, headers)
        if int(length) > limit:
            return 413, self._too_large(limit)
        return None

    def _limit(self, path: str, headers: dict[str, str]) -> int:
        if "inference-header-content-length" in headers or not _JSON_TENSORS.search(path):
            return self.max_request_bytes
        return min(self.max_json_bytes, self.max_request_bytes)

    def _too_large(self, limit: int) -> str:
        if limit < self.max_request_bytes:
            return (
                f"a request with JSON tensors is limited to {limit} bytes (JSON numbers are "
                "costly to parse); send binary tensor data (tritonclient's binary_data=True, "
                "or gRPC), smaller batches, or start the server with a larger max_json_bytes"
            )
        return (
            f"the request is larger than the server's limit of {limit} bytes; "
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
