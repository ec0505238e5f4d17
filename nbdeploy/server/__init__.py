"""The local inference server (KServe V2 / Open Inference Protocol, Triton-compatible).

From a notebook::

    >>> import nbdeploy as nbd
    >>> nbd.server.start()      # doctest: +SKIP   detached; survives kernel restarts
    >>> nbd.server.status()     # doctest: +SKIP   pid, URLs, models
    >>> nbd.server.stop()       # doctest: +SKIP

Layers, bottom up, one file each: ``layout`` (file names, no dependencies),
``codecs`` (pure V2 JSON/binary tensors) and ``parameters`` (repository-load parameters),
``config`` (Triton model configs), ``faults`` (crash points for the kill -9 tests),
``repository`` (the on-disk state, written in a crash-safe order), ``runtime``
(onnxruntime, Triton's reshape), ``classification``, ``shared_memory`` (system shared
memory regions), ``stats`` and ``metrics`` (counts shared by the worker processes through
prometheus-client, written under Triton's names), ``batcher`` (dynamic batching and
Triton's queue policy), ``loading`` (versions loaded as one transaction, restored one by
one), ``settings`` (trace and log settings), ``peers`` (changes to what is served, applied
by every worker before the call returns), ``dataplane`` (no HTTP in sight), ``http_api``
(Starlette, with TF Serving's REST predict from ``tfserving``) and ``grpc_api``
(on ``grpc_wire``: gRPC over uvicorn's HTTP/2), sharing ``grpc_common`` with ``tfs_grpc``
(TF Serving's gRPC API on grpc.aio, on its own
port when asked for; its tensors through ``tensor_proto``), ``security``, ``process``
(one server process, or one worker of it) and ``workers`` (the supervisor of several,
sharing the ports); on the notebook side, ``client`` (the typed client of the server's
own API) and ``control`` (start, status, stop, the registry of running servers).
"""

from __future__ import annotations

from ..errors import ServerError
from .control import ServerStatus, default_repository, start, status, stop

__all__ = ["ServerError", "ServerStatus", "default_repository", "start", "status", "stop"]
