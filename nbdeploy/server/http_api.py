"""The HTTP front end: KServe V2 / Triton REST routes (and TF Serving's predict) over the
dataplane, as a Starlette app. Handlers translate; errors become ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import ProtocolError
from . import config as cfg
from .codecs import decode_request, encode_response, loads
from .dataplane import DataPlane
from .parameters import decode_load
from .security import Guard, is_loopback
from .shared_memory import CUDA_SHM_REFUSAL
from .tfserving import decode_predict, encode_predict

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["build_app"]

MODEL = "/v2/models/{name}"
SHM, CUDA_SHM = "/v2/systemsharedmemory", "/v2/cudasharedmemory"
INLINE_DECODE_BYTES = 256 * 2**10  # larger JSON request headers are parsed off the event loop
VERSION = "/v2/models/{name}/versions/{version}"


def build_app(dataplane: DataPlane, guard: Guard) -> Any:
    """The ASGI app: routes, JSON errors, then the guard (token, Host, size limit)."""
    h = _Handlers(dataplane)
    routes = [
        Route("/v2/health/live", h.live),
        Route("/v2/health/ready", h.ready),
        Route("/v2", h.server_metadata),
        Route("/v2/models/stats", h.statistics),
        Route("/v2/repository/index", h.index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", h.load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", h.unload, methods=["POST"]),
        Route("/v2/repository/models/{name}/traffic", h.set_traffic, methods=["POST"]),
        Route(MODEL + "/traffic", h.traffic),
        Route("/v2/nbdeploy/overview", h.overview),
        Route("/v2/nbdeploy/models/{name}/versions/{version}/{key}", h.extra),
        Route("/v2/trace/setting", h.trace, methods=["GET", "POST"]),
        Route(MODEL + "/trace/setting", h.trace, methods=["GET", "POST"]),
        Route("/v2/logging", h.logging, methods=["GET", "POST"]),
        Route(SHM + "/status", h.shm_status),
        Route(SHM + "/region/{region}/status", h.shm_status),
        Route(SHM + "/region/{region}/register", h.shm_register, methods=["POST"]),
        Route(SHM + "/region/{region}/unregister", h.shm_unregister, methods=["POST"]),
        Route(SHM + "/unregister", h.shm_unregister, methods=["POST"]),
        Route(CUDA_SHM + "/status", h.cuda_shm_status),
        Route(CUDA_SHM + "/region/{region}/status", h.cuda_shm_status),
        Route(CUDA_SHM + "/region/{region}/register", h.cuda_shm_register, methods=["POST"]),
        Route(CUDA_SHM + "/region/{region}/unregister", h.cuda_shm_status, methods=["POST"]),
        Route(CUDA_SHM + "/unregister", h.cuda_shm_status, methods=["POST"]),
        Route("/metrics", h.metrics),
        Route("/v1/models/{name}:predict", h.predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version}:predict", h.predict, methods=["POST"]),
    ]
    for prefix in (MODEL, VERSION):
        routes += [
            Route(prefix, h.model_metadata),
            Route(prefix + "/ready", h.model_ready),
            Route(prefix + "/config", h.model_config),
            Route(prefix + "/stats", h.statistics),
            Route(prefix + "/infer", h.infer, methods=["POST"]),
        ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ProtocolError: _protocol_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    return guard.wrap(app)


async def _protocol_error(request: Request, exc: Exception) -> Response:
    status = exc.status if isinstance(exc, ProtocolError) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None  # 405's Allow
    message = {404: "no such endpoint", 405: "Method Not Allowed"}.get(status, str(exc))
    body = {"error": f"{message}: {request.method} {request.url.path}"}
    return JSONResponse(body, status, headers=headers)


async def _off_loop_if(json_size: int, decode: Callable[..., T], *args: Any) -> T:
    """Decode on the event loop, or in a thread when the JSON is large enough that
    parsing it would stall every other request."""
    if json_size > INLINE_DECODE_BYTES:
        return await asyncio.to_thread(decode, *args)
    return decode(*args)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug of ours: still JSON, logged with its traceback, no internals in the reply."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"error": f"internal error ({type(exc).__name__}); the server log has the details"},
        status_code=500,
    )


def _from_this_host(host: str, what: str) -> None:
    """Shared memory is a same-host mechanism: only loopback clients may register it."""
    if not is_loopback(host.removeprefix("[").removesuffix("]")):
        raise ProtocolError(f"{what} can only be registered by a client on this host",
                            status=403)  # fmt: skip


def _names(request: Request) -> tuple[str, str]:
    params = request.path_params
    return str(params.get("name", "")), str(params.get("version", ""))


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    try:
        doc = loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"the request is not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ProtocolError(f"the request must be a JSON object, not {type(doc).__name__}")
    return doc


class _Handlers:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.dp.ready() else 400)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse(self.dp.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(self.dp.model_metadata(*_names(request)))

    async def model_ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.dp.model_ready(*_names(request)) else 400)

    async def model_config(self, request: Request) -> Response:
        return JSONResponse(cfg.to_json(self.dp.model_config(*_names(request))))

    async def statistics(self, request: Request) -> Response:
        return JSONResponse(self.dp.statistics(*_names(request)))

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(await self.dp.metrics(), media_type="text/plain; version=0.0.4")

    async def overview(self, request: Request) -> Response:
        return JSONResponse({"models": await self.dp.overview()})

    async def extra(self, request: Request) -> Response:
        name, version = _names(request)
        key = request.path_params["key"]
        path = self.dp.extra(name, version, key)
        kind = {"example": "application/json", "report.html": "text/html; charset=utf-8",
                "report.csv": "text/csv; charset=utf-8"}[key]  # fmt: skip
        return Response(await asyncio.to_thread(path.read_bytes), media_type=kind)

    async def trace(self, request: Request) -> Response:
        name, _ = _names(request)
        changes = await _json_object(request) if request.method == "POST" else None
        if changes is None:
            return JSONResponse(self.dp.trace_settings(name))
        return JSONResponse(await self.dp.update_trace(name, changes))

    async def logging(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(dict(self.dp.settings.log))
        return JSONResponse(await self.dp.update_log(await _json_object(request)))

    async def shm_status(self, request: Request) -> Response:
        return JSONResponse(self.dp.shm.status(request.path_params.get("region", "")))

    async def shm_register(self, request: Request) -> Response:
        _from_this_host(request.client.host if request.client else "", "shared memory")
        doc = await _json_object(request)
        await self.dp.register_shm(request.path_params["region"], doc.get("key"),
                                   doc.get("offset", 0), doc.get("byte_size"))  # fmt: skip
        return Response(status_code=200)

    async def shm_unregister(self, request: Request) -> Response:
        await self.dp.unregister_shm(request.path_params.get("region", ""))
        return Response(status_code=200)

    async def cuda_shm_status(self, request: Request) -> Response:
        return JSONResponse([])  # none can be registered here

    async def cuda_shm_register(self, request: Request) -> Response:
        raise ProtocolError(CUDA_SHM_REFUSAL)

    async def traffic(self, request: Request) -> Response:
        name, _ = _names(request)
        return JSONResponse({"name": name, "traffic": self.dp.traffic(name)})

    async def infer(self, request: Request) -> Response:
        name, version = _names(request)
        raw_length = request.headers.get("inference-header-content-length")
        if raw_length is not None and not (raw_length.isascii() and raw_length.isdigit()):
            raise ProtocolError(f"Inference-Header-Content-Length {raw_length!r} is not a number")
        body = await request.body()
        header_length = int(raw_length) if raw_length is not None else None
        if header_length == 0:  # Triton's raw binary request: one input's bytes, no JSON
            decoded = self.dp.raw_request(name, version, body)
        else:
            json_size = header_length if header_length is not None else len(body)
            decoded = await _off_loop_if(json_size, decode_request, body, header_length)
        result = await self.dp.infer(name, version, decoded)
        payload, header = encode_response(result.model, result.version, result.outputs, decoded,
                                          result.in_shm)  # fmt: skip
        if header is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header)},
        )

    async def predict(self, request: Request) -> Response:
        name, version = _names(request)
        body, inputs = await request.body(), self.dp.inputs(name, version)
        decoded, rows = await _off_loop_if(len(body), decode_predict, body, inputs)
        result = await self.dp.infer(name, version, decoded)
        return Response(encode_predict(result.outputs, rows), media_type="application/json")

    async def index(self, request: Request) -> Response:
        ready = bool((await _json_object(request)).get("ready", False))
        return JSONResponse(self.dp.index(ready_only=ready))

    async def load(self, request: Request) -> Response:
        name, _ = _names(request)
        params = (await _json_object(request)).get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError("'parameters' must be an object")
        load = decode_load(params, _files(params))
        number = await self.dp.load(name, **vars(load))
        if number is None:
            return Response(status_code=200)
        return JSONResponse({"name": name, "version": number, "traffic": self.dp.traffic(name)})

    async def unload(self, request: Request) -> Response:
        await self.dp.unload(_names(request)[0])
        return Response(status_code=200)

    async def set_traffic(self, request: Request) -> Response:
        name, _ = _names(request)
        doc = await _json_object(request)
        shares = doc.get("traffic") or {}
        if not isinstance(shares, dict):
            raise ProtocolError("'traffic' must be an object of version -> share")
        action = doc.get("action", "set")
        if not isinstance(action, str):
            raise ProtocolError("'action' must be one of 'promote', 'rollback', 'set'")
        await self.dp.set_traffic(name, action, shares)
        return JSONResponse({"name": name, "traffic": self.dp.traffic(name)})


def _files(params: dict[str, Any]) -> dict[str, bytes]:
    files = {}
    for key, value in params.items():
        if not key.startswith("file:"):
            continue
        if not isinstance(value, str):
            raise ProtocolError(f"parameter '{key}' must be base64-encoded file content")
        try:
            files[key[5:]] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError) as err:
            raise ProtocolError(f"parameter '{key}' must be base64-encoded file content") from err
    return files
