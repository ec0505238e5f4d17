"""The local inference server (KServe V2 / Open Inference Protocol, Triton-compatible).

From a notebook::

    >>> import nbdeploy as nbd
    >>> nbd.server.start()      # doctest: +SKIP   detached; survives kernel restarts
    >>> nbd.server.status()     # doctest: +SKIP   pid, URLs, models
    >>> nbd.server.stop()       # doctest: +SKIP

Layers, bottom up, one file each: ``codecs`` (pure V2 JSON/binary tensors),
``config`` (Triton model configs), ``repository`` (the on-disk state), ``runtime``
(onnxruntime), ``batcher`` (dynamic batching), ``loading`` (versions loaded as one
transaction), ``dataplane`` (no HTTP in sight),
``http_api`` (Starlette) and ``grpc_api`` (grpc.aio), ``security``, ``process`` (the
server process) and ``control`` (start/status/stop from a notebook).
"""

from __future__ import annotations

from ..errors import ServerError
from .control import ServerStatus, default_repository, start, status, stop

__all__ = ["ServerError", "ServerStatus", "default_repository", "start", "status", "stop"]
