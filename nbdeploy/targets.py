"""Where a model goes, as data: the local server, a Triton server, or a Triton model
repository folder — parsed once from what a user types, then handed to :func:`deploy`.

    >>> parse_target(None)                          # doctest: +SKIP
    LocalTarget(repository=None)
    >>> parse_target("grpc://triton:8001")          # doctest: +SKIP
    TritonTarget(address='triton:8001', protocol='grpc', token=None)
    >>> parse_target("repo/")                       # doctest: +SKIP
    FolderTarget(folder=PosixPath('repo'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from .errors import ConfigError, PushError

if TYPE_CHECKING:
    from .artifact import Artifact
    from .bench.results import Comparison

__all__ = [
    "Deployed",
    "FolderTarget",
    "LocalTarget",
    "Target",
    "TritonTarget",
    "check_reachable",
    "deploy",
    "parse_target",
]


@dataclass(frozen=True)
class LocalTarget:
    """nbdeploy's own server on this machine (started if none runs).

    Attributes:
        repository: Its model repository (default: ``nbd.server.default_repository()``).
    """

    repository: Path | None = None

    def __str__(self) -> str:
        return f"the local server ({self.repository or 'default repository'})"


@dataclass(frozen=True)
class TritonTarget:
    """A Triton server in explicit model-control mode, reached over HTTP or gRPC.

    Attributes:
        address: ``host:port``.
        protocol: ``"http"`` or ``"grpc"``.
        token: Bearer token sent with every call.
    """

    address: str
    protocol: Literal["http", "grpc"] = "http"
    token: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.protocol}://{self.address}"


@dataclass(frozen=True)
class FolderTarget:
    """A Triton model repository on disk, for ``tritonserver --model-repository``.

    Attributes:
        folder: The repository folder (created if missing).
    """

    folder: Path

    def __str__(self) -> str:
        return str(self.folder)


Target = LocalTarget | TritonTarget | FolderTarget


def parse_target(
    text: str | os.PathLike[str] | Target | None,
    *,
    repository: str | os.PathLike[str] | None = None,
) -> Target:
    """A :data:`Target` from what a user wrote.

    Args:
        text: ``None`` or ``""`` for the local server; ``host:port``, ``http://host:port``
            or ``grpc://host:port`` for a Triton server; a folder (a ``Path``, a path with
            a separator such as ``"repo/"``, or an existing folder) for a repository on
            disk. A target is returned as it is.
        repository: The local server's repository, for the local target.

    Raises:
        ConfigError: ``text`` is none of these.
    """
    if isinstance(text, LocalTarget | TritonTarget | FolderTarget):
        return text
    if text is None or os.fspath(text) == "":
        return LocalTarget(Path(repository) if repository else None)
    raw = os.fspath(text)
    if isinstance(text, os.PathLike) or (
        "://" not in raw and (os.sep in raw or Path(raw).is_dir())
    ):
        return FolderTarget(Path(raw))
    protocol, _, address = raw.rpartition("://")
    host, _, port = address.rstrip("/").rpartition(":")
    if protocol not in ("", "http", "grpc") or not host or not port.isdigit():
        raise ConfigError(
            f"target {raw!r}: use nothing (the local server), host:port, http://host:port or "
            "grpc://host:port (a Triton server), or a folder such as 'repo/'"
        )
    return TritonTarget(address.rstrip("/"), "grpc" if protocol == "grpc" else "http")


def check_reachable(target: Target, *, timeout: float = 5.0) -> None:
    """Fail now, not after a minute of exporting, if ``target`` cannot take a model: a
    Triton server that does not answer, or a folder that cannot be written."""
    if isinstance(target, TritonTarget):
        from .triton.client import connect

        try:
            live = bool(connect(target.address, target.protocol, token=target.token,
                                timeout=timeout).is_server_live())  # fmt: skip
        except Exception as err:  # tritonclient raises its own error types
            raise PushError(
                f"cannot reach Triton at {target.address}: {err}. Is tritonserver running and "
                "listening there?",
                target=str(target),
            ) from err
        if not live:
            raise PushError(f"the Triton at {target} is not live", target=str(target))
    elif isinstance(target, FolderTarget):
        try:
            target.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot write the repository folder {target}: {err}") from err


@runtime_checkable
class Deployed(Protocol):
    """A model version that :func:`deploy` put somewhere: a
    :class:`~nbdeploy.Deployment` on the local server or a :class:`~nbdeploy.PushResult`.

    Attributes:
        name: Model name.
        version: Version number.
    """

    name: str
    version: int

    def client(self) -> Any:
        """A ready tritonclient client for where it runs."""
        ...

    def _repr_html_(self) -> str: ...


def deploy(
    art: Artifact,
    target: str | os.PathLike[str] | Target | None = None,
    *,
    name: str | None = None,
    version: int | None = None,
    canary: float | None = None,
    labels: Sequence[str] | None = None,
    report: Comparison | None = None,
) -> Deployed:
    """Put ``art`` where ``target`` says: serve it on the local server (the default), push
    it to a Triton server, or write it into a repository folder.

    Args:
        art: The artifact.
        target: Where (see :func:`parse_target`).
        name: Model name (default: the artifact's).
        version: Version number (default: the next one).
        canary: Percent of traffic for the new version (local server only).
        labels: Class names of the first output (local server only; see ``nbd.serve``).
        report: The comparison that chose ``art``, kept beside the version (local server
            only; see ``nbd.serve``).

    Raises:
        ConfigError: ``canary`` or ``labels`` for a target that does not take them.
    """
    where = parse_target(target)
    if isinstance(where, LocalTarget):
        from .deployment import serve

        return serve(art, name=name, version=version, canary=canary, labels=labels,
                     report=report, repository=where.repository)  # fmt: skip
    if canary is not None:
        raise ConfigError(
            f"canary works on the local server; {where} replaces versions instead (Triton's "
            "repository API), so deploy there without canary"
        )
    if labels is not None:
        raise ConfigError(f"labels= works on the local server; push to {where} without it")
    from .triton.push import push

    return push(art, where, name=name, version=version)
