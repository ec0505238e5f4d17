"""``nbd.push``: an artifact onto a real Triton through its repository API (config and
files as load overrides, as ``tritonclient``'s ``load_model(config=, files=)`` sends
them), verified through the wire; or into a Triton model repository on disk.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from .._warnings import warn
from ..artifact import Artifact
from ..errors import ConfigError, PushError
from ..provenance import Parity
from ..server import config as cfg
from ..targets import FolderTarget, LocalTarget, TritonTarget, parse_target
from .client import connect, wire_parity
from .model_folder import Backend, default_backend, triton_config, version_files, write_version

__all__ = ["PushResult", "push"]

NO_ORT_BACKEND = "unable to find backend library for backend 'onnxruntime'"
NOT_EXPLICIT = ("not allowed", "polling", "model control mode")
# How servers say a request is too large (ours, HTTP proxies, gRPC).
HTTP_DEFAULT_LIMIT = 64 * 2**20  # Triton's --http-max-input-size default, and nbdeploy's
TOO_LARGE = ("larger than the server's limit", "413", "Received message larger than max",
             "RESOURCE_EXHAUSTED")  # fmt: skip


@dataclass
class PushResult:
    """Where a pushed model version now lives.

    Attributes:
        target: The server address or folder pushed to.
        name: Model name.
        version: Version number.
        backend: Triton backend used.
        folder: The model's folder, for pushes to disk.
        parity: Answers through the server against the artifact's, for pushes to a server.
    """

    target: str
    name: str
    version: int
    backend: str
    folder: Path | None = None
    parity: Parity | None = None
    protocol: str = "http"
    token: str | None = field(default=None, repr=False)

    def client(self) -> Any:
        """A tritonclient client for the server pushed to."""
        if self.folder is not None:
            raise ConfigError(f"{self.name} was written to {self.folder}, not to a server")
        return connect(self.target, self.protocol, token=self.token)

    def __str__(self) -> str:
        where = str(self.folder) if self.folder else f"{self.protocol}://{self.target}"
        check = f"; through the wire {self.parity}" if self.parity else ""
        return f"{self.name} v{self.version} ({self.backend}) at {where}{check}"

    def _repr_html_(self) -> str:
        from .. import _html

        facts: list[tuple[str, object]] = [
            ("where", str(self.folder or f"{self.protocol}://{self.target}")),
            ("version", self.version), ("backend", self.backend),
        ]  # fmt: skip
        if self.parity is not None:
            facts.append(("through the wire", _html.verdict(self.parity.ok, str(self.parity))))
        return _html.card(f"pushed {self.name}", _html.fields(facts))


def push(
    art: Artifact,
    target: str | os.PathLike[str] | TritonTarget | FolderTarget,
    *,
    name: str | None = None,
    version: int | None = None,
    backend: Literal["auto", "onnxruntime", "python", "pytorch"] = "auto",
    max_batch_size: int | None = None,
    instances: int = 1,
    dynamic_batching: bool = True,
    gpu: bool = False,
    tensorrt: bool = False,
    token: str | None = None,
    timeout: float = 120.0,
    repository: str | os.PathLike[str] | None = None,
    max_request_bytes: int = HTTP_DEFAULT_LIMIT,
) -> PushResult:
    """Push an artifact to a Triton server, or write it into a model repository folder.

    A model travels to a server inside its load request, which servers cap (nbdeploy's
    local server at 64 MiB, proxies often lower). For a large model, do as Triton users
    do: give ``repository``, the server's model repository as this machine sees it (a
    shared folder or mount); the version is written there and the server is asked to
    load it from disk, with nothing large on the wire.

    Args:
        art: ONNX, TorchScript or SavedModel artifact.
        target: ``host:port`` / ``http://host:port`` / ``grpc://host:port`` of a Triton
            started with ``--model-control-mode=explicit``; or a folder (existing, or a
            path with a separator) to write a repository into; or a target
            (:func:`nbdeploy.targets.parse_target`).
        name: Model name (default: the artifact's).
        version: Version number (default: one more than the newest known).
        backend: ``"onnxruntime"`` (native ONNX), ``"python"`` (onnxruntime inside Triton's
            Python backend: works where the stub environment has onnxruntime), ``"pytorch"``
            (TorchScript), ``"tensorflow"`` (SavedModel), or ``"auto"``: native, falling
            back to Python (ONNX only) with a warning when the server has no onnxruntime
            backend.
        max_batch_size: Largest batch (default 128 for models with a batch dimension).
        instances: Model instances.
        dynamic_batching: Merge concurrent requests.
        gpu: GPU instance groups.
        tensorrt: TensorRT accelerator on the onnxruntime backend (with ``gpu``).
        token: Bearer token sent with every call.
        timeout: Seconds to wait for the version to be ready.
        repository: For a server target: the folder the server reads its repository
            from, as seen here; the model is written there and loaded by name.
        max_request_bytes: The largest HTTP request the server accepts (Triton's
            ``--http-max-input-size`` and nbdeploy's server: 64 MiB by default). A model
            whose load request would be larger is refused here, before it is encoded.

    Returns:
        A :class:`PushResult` (with ``parity`` through the server for server targets).

    Raises:
        PushError: unreachable server, not in explicit mode, config refused (Triton's
            message), not ready in time, or answers differ from the artifact's.
    """
    name = name or art.name
    options = {"max_batch_size": max_batch_size, "instances": instances,
               "dynamic_batching": dynamic_batching, "gpu": gpu, "tensorrt": tensorrt}  # fmt: skip
    where = parse_target(target)
    if isinstance(where, LocalTarget):
        raise ConfigError("push needs a Triton address or a folder; nbd.serve serves locally")
    if isinstance(where, FolderTarget):
        folder = where.folder
        chosen: Backend = default_backend(art) if backend == "auto" else backend
        number = version or _next_on_disk(folder / name)
        written = write_version(folder, art, name=name, version=number, backend=chosen, **options)
        return PushResult(str(folder), name, number, chosen, folder=written)
    address, protocol, token = where.address, where.protocol, token or where.token
    client = connect(address, protocol, token=token)
    _check_live(client, address)
    loaded: str
    if repository is not None:
        shared = Path(repository)
        number = version or max(
            _next_on_server(client, name, address), _next_on_disk(shared / name)
        )
        loaded = _load(client, art, name, number, backend, options, address, shared)
    else:
        if protocol == "http":
            _check_request_size(art, name, address, max_request_bytes)
        number = version or _next_on_server(client, name, address)
        loaded = _load(client, art, name, number, backend, options, address)
    _wait_ready(client, name, number, address, timeout)
    parity = _verify(client, art, name, number, address)
    return PushResult(address, name, number, loaded, parity=parity, protocol=protocol, token=token)


def _check_live(client: Any, address: str) -> None:
    try:
        live = client.is_server_live()
    except Exception as err:
        raise PushError(
            f"cannot reach Triton at {address}: {err}. Is tritonserver running and listening "
            "there?",
            target=address,
        ) from err
    if not live:
        raise PushError(f"Triton at {address} says it is not live", target=address)


def _next_on_server(client: Any, name: str, address: str) -> int:
    """One more than the newest version Triton knows: loaded ones (metadata; models loaded
    through overrides are not in the repository index) and ones in its repository."""
    try:
        index = client.get_model_repository_index()
    except Exception as err:
        raise PushError(
            f"Triton at {address} has no repository API: {err}", target=address
        ) from err
    rows = index if isinstance(index, list) else json.loads(_to_json(index)).get("models", [])
    versions = [int(r["version"]) for r in rows if r.get("name") == name and r.get("version")]
    try:
        metadata = client.get_model_metadata(name)
    except Exception:  # not loaded: nothing to add
        metadata = None
    if metadata is not None:
        loaded = metadata["versions"] if isinstance(metadata, dict) else metadata.versions
        versions += [int(v) for v in loaded]
    return max(versions, default=0) + 1


def _to_json(message: Any) -> str:
    from google.protobuf import json_format

    return str(json_format.MessageToJson(message, preserving_proto_field_name=True))


def _next_on_disk(folder: Path) -> int:
    numbers = [int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(numbers, default=0) + 1


def _load(
    client: Any,
    art: Artifact,
    name: str,
    version: int,
    backend: str,
    options: dict[str, Any],
    address: str,
    repository: Path | None = None,
) -> str:
    """Load through the repository API — the files inside the request, or, with
    ``repository`` (the server's own, as mounted here), written there first and loaded by
    name; ``"auto"`` falls back to the Python backend. Returns the backend that took it."""
    from tritonclient.utils import InferenceServerException

    for chosen in _backends(art, backend):
        try:
            if repository is not None:
                write_version(repository, art, name=name, version=version, backend=chosen,
                              **options)  # fmt: skip
                client.load_model(name)
            else:
                config = json.dumps(cfg.to_json(triton_config(art, name, chosen, **options),
                                                defaults=False))  # fmt: skip
                files = {f"file:{path}": data
                         for path, data in version_files(art, version, chosen).items()}  # fmt: skip
                client.load_model(name, config=config, files=files)
            return chosen
        except InferenceServerException as err:
            message = err.message() or str(err)
            if not _falls_back(chosen, backend, message, name, address):
                raise _refusal(message, name, address) from err
    raise PushError(f"no backend could load '{name}'", target=address)


def _check_request_size(art: Artifact, name: str, address: str, limit: int) -> None:
    """Refuse before encoding a load request the server would refuse after reading it:
    its files travel base64-encoded in JSON (4/3 of their size)."""
    encoded = -(-art.size_bytes // 3) * 4 + 64 * 2**10  # the files, and room for the config
    if encoded > limit:
        raise _too_large(
            name, address, f"the request would be about {encoded:,} bytes, more than the "
            f"{limit:,} the server accepts (max_request_bytes=; Triton's --http-max-input-size)",
        )  # fmt: skip


def _backends(art: Artifact, backend: str) -> list[Backend]:
    """The backends to try, in order: ``"auto"`` is native, then Python for ONNX."""
    if backend == "auto":
        first = default_backend(art)
        return [first, "python"] if art.format == "onnx" else [first]
    return [cast(Backend, backend)]


def _falls_back(chosen: str, backend: str, message: str, name: str, address: str) -> bool:
    """Whether a refusal means: no onnxruntime backend there, try Python (and say so)."""
    if backend != "auto" or chosen != "onnxruntime" or NO_ORT_BACKEND not in message:
        return False
    warn(
        f"Triton at {address} has no onnxruntime backend; serving '{name}' with a "
        "Python-backend model that runs onnxruntime instead"
    )
    return True


def _refusal(message: str, name: str, address: str) -> PushError:
    if any(sign in message for sign in TOO_LARGE):
        return _too_large(name, address, message.split(";")[0].strip().rstrip("."))
    if "explicit" in message and any(part in message for part in NOT_EXPLICIT):
        return PushError(
            f"Triton at {address} does not accept model loads ({message.strip()}); start it "
            "with --model-control-mode=explicit",
            target=address,
        )
    return PushError(f"Triton at {address} refused model '{name}': {message.strip()}",
                     target=address, model=name)  # fmt: skip


def _too_large(name: str, address: str, why: str) -> PushError:
    return PushError(
        f"the server at {address} cannot take '{name}' this way: the model travels inside "
        f"the load request, and {why}. Write it where the server reads its repository "
        f"instead: nbd.push(art, '{address}', repository='<the server's model repository, "
        "as mounted here>') — for nbdeploy's local server, nbd.serve(art) does this",
        target=address, model=name,
    )  # fmt: skip


def _wait_ready(client: Any, name: str, version: int, address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.is_model_ready(name, str(version)):
            return
        time.sleep(0.2)
    raise PushError(f"'{name}' v{version} was not ready on {address} after {timeout:.0f}s",
                    target=address)  # fmt: skip


def _verify(client: Any, art: Artifact, name: str, version: int, address: str) -> Parity | None:
    """Run the example through the server and compare with the artifact in process."""
    parity = wire_parity(client, art, name, version, address)
    if parity is not None and not parity.ok:
        raise PushError(
            f"'{name}' v{version} on {address} answers differently from the artifact: "
            f"{parity}. The server's runtime may differ from this machine's onnxruntime.",
            target=address, parity=parity,
        )  # fmt: skip
    return parity
