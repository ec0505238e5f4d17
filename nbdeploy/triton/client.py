"""tritonclient, set up once for everything in nbdeploy that calls a server (ours or a
Triton): clients with the token attached and gRPC limits raised, and request inputs
built from an artifact's signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..server.config import v2_datatype
from ..types import TensorSpec

if TYPE_CHECKING:
    from ..artifact import Artifact
    from ..provenance import Parity

__all__ = ["connect", "inputs", "wire_parity"]

WIRE_ATOL, WIRE_RTOL = 1e-4, 1e-3  # the server's onnxruntime may be another version
# A 5 MiB model load already exceeds gRPC's default message limit.
GRPC_LIMITS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class _Bearer:
    """A tritonclient plugin that adds the bearer token to every call."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: Any) -> None:
        request.headers["authorization"] = f"Bearer {self._token}"


def connect(
    address: str, protocol: str = "http", *, token: str | None = None, timeout: float | None = None
) -> Any:
    """A tritonclient client for ``host:port``; the token, if any, goes with every call.
    ``timeout`` bounds each HTTP call (default: 10 s to connect, 60 s to answer, as loads
    of large models take a while)."""
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(address, channel_args=GRPC_LIMITS)
    elif protocol == "http":
        import tritonclient.http as httpclient

        limits = {"connection_timeout": timeout or 10.0, "network_timeout": timeout or 60.0}
        client = httpclient.InferenceServerClient(address, **limits)
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
        if array.dtype.kind in "US":  # numpy's fixed-width text: tritonclient wants objects
            array = array.astype(object)
        item = module.InferInput(spec.name, list(array.shape), v2_datatype(spec.dtype))
        item.set_data_from_numpy(array)
        items.append(item)
    return items


def wire_parity(client: Any, art: Artifact, name: str, version: int, where: str) -> Parity | None:
    """Run the artifact's example (or a made-up feed of its signature) through the server,
    naming the version, and compare the answers with the artifact's own. ``None`` when
    there is no example and the artifact itself cannot run a made-up feed (a model whose
    strings must be numbers, say): then there is nothing to compare."""
    from .._feed import random_feed
    from ..errors import ArtifactError
    from ..provenance import Parity, compare_outputs

    feed = art.example or random_feed(art.inputs)
    try:
        want = art.run(feed)
    except ArtifactError:
        if art.example:
            raise
        return None
    result = client.infer(name, inputs(client, art.inputs, feed), model_version=str(version))
    got = {spec.name: _as_text(result.as_numpy(spec.name)) for spec in art.outputs}
    batch = next(iter(feed.values())).shape[0] if feed else 1
    checks = compare_outputs(got, want, batch_size=batch, atol=WIRE_ATOL, rtol=WIRE_RTOL)
    return Parity(f"'{name}' v{version} on {where}", WIRE_ATOL, WIRE_RTOL, tuple(checks))


def _as_text(array: np.ndarray) -> np.ndarray:
    """BYTES come back as bytes; the artifact answers str (onnxruntime's strings)."""
    if array.dtype.kind != "O":
        return array
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape)
