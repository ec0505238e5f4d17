"""tritonclient, set up once for everything in nbdeploy that calls a server (ours or a
Triton): clients with the token attached and gRPC limits raised, and request inputs
built from an artifact's signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..server.config import v2_datatype
from ..types import TensorSpec

__all__ = ["connect", "inputs"]

# A 5 MiB model load already exceeds gRPC's default message limit.
GRPC_LIMITS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class _Bearer:
    """A tritonclient plugin that adds the bearer token to every call."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: Any) -> None:
        request.headers["authorization"] = f"Bearer {self._token}"


def connect(address: str, protocol: str = "http", *, token: str | None = None) -> Any:
    """A tritonclient client for ``host:port``; the token, if any, goes with every call."""
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(address, channel_args=GRPC_LIMITS)
    elif protocol == "http":
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(address, connection_timeout=10.0)
    else:
        raise ConfigError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    if token:
        client.register_plugin(_Bearer(token))
    return client


def inputs(client: Any, specs: Sequence[TensorSpec], feed: Mapping[str, Any]) -> list[Any]:
    """``InferInput`` s for ``client`` (HTTP or gRPC), one per spec, from ``feed``."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    items = []
    for spec in specs:
        array = np.asarray(feed[spec.name])
        item = module.InferInput(spec.name, list(array.shape), v2_datatype(spec.dtype))
        item.set_data_from_numpy(array)
        items.append(item)
    return items
