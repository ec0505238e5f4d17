"""``nbd.serve``: put an artifact on the local server as a new version of a model, beside
the versions already serving, and get a :class:`Deployment` to call, canary, promote and
roll back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from ._deps import require
from .artifact import Artifact
from .errors import ConfigError
from .server import control
from .server.layout import STAGING

__all__ = ["Deployment", "deployments", "serve"]


def serve(
    art: Artifact,
    *,
    name: str | None = None,
    version: int | None = None,
    canary: float | None = None,
    max_batch_size: int | None = None,
    instances: int = 1,
    dynamic_batching: bool = True,
    repository: str | os.PathLike[str] | None = None,
) -> Deployment:
    """Serve an artifact on the local server (started if none runs) as a new version.

    The new version loads beside the ones serving and takes traffic only once it is
    ready; if it fails to load, the old version keeps serving and the loader's reason
    is raised. The server numbers the version, so two kernels serving one model at once
    get two distinct versions. Versions of one model share one signature: a model with
    other inputs or outputs must be served under a new name.

    Args:
        art: An ONNX artifact.
        name: Model name on the server (default: the artifact's name).
        version: Version number (default: one more than any the server knows).
        canary: Percent of the requests that name no version to send to the new version
            (the rest stay on the current one); ``None`` sends all of them.
        max_batch_size: Largest batch per run (default 128 for models with a batch
            dimension, else 0).
        instances: Model runs that may execute at once.
        dynamic_batching: Merge concurrent requests into one run.
        repository: The server's model repository (default: ``nbd.server.default_repository()``).

    Returns:
        The :class:`Deployment` of the new version.

    Raises:
        ConfigError: The artifact is not ONNX, or an argument is out of range.
        ServerError: The server refused the model (its message says why), e.g. its
            signature differs from the versions serving.
    """
    require("tritonclient", extra="serve", feature="nbd.serve", package="tritonclient[http,grpc]")
    from .server import config as cfg

    if art.format != "onnx":
        raise ConfigError(
            "the local server runs ONNX models; export with format='onnx', or push TorchScript "
            "to Triton with nbd.push"
        )
    name = name or art.name
    status = control.start(repository)
    on_disk = _versions_on_disk(status.repository, name)  # checks the name, too
    if version is not None and (version < 1 or version in on_disk):
        raise ConfigError(
            f"version {version} of '{name}' is taken or invalid; versions on disk: {on_disk}"
        )
    config = cfg.build_config(
        name, art.inputs, art.outputs, max_batch_size=max_batch_size, instances=instances,
        dynamic_batching=dynamic_batching, parameters=art.session_config,
    )  # fmt: skip
    params: dict[str, Any] = {
        "config": json.dumps(cfg.to_json(config)),
        "staged": _stage(art, status.repository),
    }
    if version is not None:
        params["version"] = version
    if canary is not None:
        params["canary"] = canary
    # The server moves the staged files in, numbers the version under its lock and
    # answers with it (or drops them and says why); this kernel never writes the model's
    # folder, so a kill of either process at any instant leaves a state the server serves.
    doc = control.call(_state(status), "POST", f"/v2/repository/models/{quote(name)}/load",
                       {"parameters": params})  # fmt: skip
    return Deployment(name, int(doc["version"]), status)


def _stage(art: Artifact, repository: Path) -> str:
    """Save the artifact into a fresh folder of the repository's staging area; its name."""
    area = repository / STAGING
    folder: Path | None = None
    try:
        area.mkdir(exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="serve-", dir=area))
        art.save(folder / "model.onnx")
    except OSError as err:
        if folder is not None:  # ours alone: nothing names it yet
            shutil.rmtree(folder, ignore_errors=True)
        raise control.ServerError(
            f"the repository {repository} is not writable: {err.strerror or err}; free some "
            "space or fix its permissions, then serve again (nothing was changed)",
            status=503,
        ) from err
    return folder.name


def deployments(repository: str | os.PathLike[str] | None = None) -> list[Deployment]:
    """The models the local server serves, each at its newest serving version."""
    status = control.status(repository)
    if not status.running:
        return []
    names = sorted({row["name"] for row in status.models if row.get("state") == "READY"})
    found = []
    for name in names:
        serving = _serving(_state(status), name)
        if serving:
            found.append(Deployment(name, serving[-1], status))
    return found


@dataclass
class Deployment:
    """One model version on the local server.

    Attributes:
        name: Model name.
        version: The version this deployment made.
        http_url: The server's HTTP base URL (KServe V2 REST).
        grpc_url: The server's gRPC ``host:port``.
        metrics_url: Prometheus metrics (Triton's names).
    """

    name: str
    version: int
    server: control.ServerStatus = field(repr=False)

    @property
    def http_url(self) -> str:
        return self.server.http_url

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.server.metrics_url

    @property
    def infer_url(self) -> str:
        """The URL to POST V2 inference requests to (any version, by traffic share)."""
        return f"{self.http_url}/v2/models/{quote(self.name)}/infer"

    @property
    def traffic(self) -> dict[int, float]:
        """Share of the requests that name no version, by version (live)."""
        doc = control.call(_state(self.server), "GET", f"/v2/models/{quote(self.name)}/traffic")
        return {int(v): float(s) for v, s in doc["traffic"].items()}

    def promote(self) -> dict[int, float]:
        """Send all traffic to the newest version; returns the new split."""
        return self._traffic_action("promote")

    def rollback(self) -> dict[int, float]:
        """Send all traffic back to the previous version and unload the newest."""
        return self._traffic_action("rollback")

    def _traffic_action(self, action: str) -> dict[int, float]:
        path = f"/v2/repository/models/{quote(self.name)}/traffic"
        doc = control.call(_state(self.server), "POST", path, {"action": action})
        return {int(v): float(s) for v, s in doc["traffic"].items()}

    def stats(self) -> list[dict[str, Any]]:
        """Triton's statistics for every loaded version of this model."""
        doc = control.call(_state(self.server), "GET", f"/v2/models/{quote(self.name)}/stats")
        rows: list[dict[str, Any]] = doc["model_stats"]
        return rows

    def versions(self) -> list[dict[str, Any]]:
        """One row per loaded version: traffic share, request and failure counts, and
        median latency in ms (``None`` before the first request)."""
        traffic, latency = self.traffic, self.latency_us()
        rows = []
        for stats in self.stats():
            number = int(stats["version"])
            counts = stats["inference_stats"]
            p50 = latency.get(number)
            rows.append({"version": number, "traffic": traffic.get(number, 0.0), "ready": True,
                         "requests": counts["success"]["count"],
                         "failures": counts["fail"]["count"],
                         "p50_ms": round(p50 / 1000, 3) if p50 is not None else None})  # fmt: skip
        return rows

    def latency_us(self, quantile: float = 0.5) -> dict[int, float]:
        """Request latency (µs) by version over recent requests, from the server's
        ``nv_inference_request_summary_us`` metric."""
        import re
        import urllib.request

        request = urllib.request.Request(self.metrics_url)
        if self.server.token:
            request.add_header("Authorization", f"Bearer {self.server.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        pattern = re.compile(
            r'^nv_inference_request_summary_us\{model="' + re.escape(self.name)
            + r'",version="(\d+)",quantile="' + re.escape(str(quantile)) + r'"\} (\S+)$',
            re.MULTILINE,
        )  # fmt: skip
        return {int(v): float(x) for v, x in pattern.findall(text) if x != "nan"}

    def client(self, protocol: Literal["http", "grpc"] = "http") -> Any:
        """A ready tritonclient client for this server (the token, if any, attached)."""
        from .triton.client import connect

        address = self.grpc_url if protocol == "grpc" else self.http_url.removeprefix("http://")
        return connect(address, protocol, token=self.server.token)

    def __str__(self) -> str:
        return (
            f"{self.name} v{self.version}: {self.infer_url}\n"
            f"  gRPC {self.grpc_url} · metrics {self.metrics_url}"
        )

    def _repr_html_(self) -> str:
        from . import _html

        return _html.card(
            f"{self.name} · version {self.version}",
            _html.fields([("HTTP", self.infer_url), ("gRPC", self.grpc_url),
                          ("metrics", _html.Raw(f"<a href='{escape(self.metrics_url)}'>"
                                                f"{escape(self.metrics_url)}</a>"))]),
        )  # fmt: skip


def _state(status: control.ServerStatus) -> dict[str, Any]:
    return {"http_url": status.http_url, "token": status.token}


def _serving(state: dict[str, Any], name: str) -> list[int]:
    """Versions of ``name`` that take traffic now, ascending (empty if not served)."""
    try:
        doc = control.call(state, "GET", f"/v2/models/{quote(name)}/traffic")
    except control.ServerError as err:
        if err.status == 404:
            return []
        raise
    return sorted(int(v) for v, share in doc["traffic"].items() if share > 0)


def _versions_on_disk(repository: Path, name: str) -> list[int]:
    from .server.codecs import ProtocolError
    from .server.repository import Repository, check_model_name

    try:
        check_model_name(name)
    except ProtocolError as err:
        raise ConfigError(str(err)) from err
    return Repository(repository).versions(name)
