"""What every gRPC front end of the server shares (Triton's ``GRPCInferenceService`` in
``grpc_api``, TF Serving's services in ``tfs_grpc``): the one mapping from
:class:`ProtocolError` statuses to gRPC codes, the decorator that applies it, and the
token check of ``grpc.aio`` servers (TF Serving's; ``grpc_wire`` maps errors and checks
the token itself, with the same codes and words).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc

from ..errors import ProtocolError
from .security import TOKEN_REFUSAL, Guard

log = logging.getLogger(__name__)
S = TypeVar("S")
T = TypeVar("T")
Context: TypeAlias = grpc.aio.ServicerContext

__all__ = ["STATUS_CODES", "Context", "TokenCheck", "abort", "internal_error", "translating"]

# HTTP status of a ProtocolError -> gRPC code: the one place both front ends map errors.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,  # the client went away (nginx's number for it)
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def translating(method: Callable[[S, Any, Context], Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn a ProtocolError into the matching gRPC status, like HTTP's error handler; any
    other exception is a bug of ours: logged, answered INTERNAL without internals."""

    async def wrapper(self: S, request: Any, context: Context) -> T:
        try:
            return await method(self, request, context)
        except ProtocolError as err:
            code = STATUS_CODES.get(err.status or 400, grpc.StatusCode.INVALID_ARGUMENT)
            await abort(context, code, str(err))
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            log.error("%s failed", method.__name__, exc_info=err)
            await abort(context, grpc.StatusCode.INTERNAL, internal_error(err))

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def internal_error(err: Exception) -> str:
    """What a client is told of a bug of ours (the details go to the server log only)."""
    return f"internal error ({type(err).__name__}); see the server log"


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with ``code`` and ``message``."""
    await context.abort(code, message)
    raise AssertionError("grpc.aio's abort always raises")


class TokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuse calls without ``authorization: Bearer <token>`` metadata (when the server
    has a token), but for the ``open`` methods (health probes).

    Args:
        guard: The server's admission rules (its token).
        open_methods: Full method names (``/package.Service/Method``) callable without it.
    """

    def __init__(self, guard: Guard, open_methods: Collection[str] = ()) -> None:
        self._guard = guard
        self._open = frozenset(open_methods)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        metadata = dict(details.invocation_metadata or ())
        if details.method in self._open or self._guard.token_ok(metadata.get("authorization")):
            return await continuation(details)

        async def refuse(request: object, context: Context) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, TOKEN_REFUSAL)

        if details.method.endswith("StreamInfer"):
            return grpc.stream_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)
