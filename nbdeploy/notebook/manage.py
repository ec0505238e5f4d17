"""``%deploy list``, ``promote``, ``rollback`` and ``stop``: the deployments on the local
server as a table, and the actions on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _html
from ..deployment import Deployment, deployments
from ..errors import ConfigError
from ..server import control

__all__ = ["DeploymentTable", "TrafficSplit", "deployment_table", "stop", "traffic_action"]

HEADER = ["model", "version", "traffic %", "ready", "requests", "failures", "p50 ms"]


@dataclass
class DeploymentTable:
    """One row per loaded version of every model on the local server."""

    rows: list[list[Any]]
    server: str

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        if not self.rows:
            return f"no deployments ({self.server})"
        widths = [max(len(str(r[i])) for r in [HEADER, *self.rows]) for i in range(len(HEADER))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
                 for row in [HEADER, *self.rows]]  # fmt: skip
        return "\n".join([self.server, *lines])

    def _repr_html_(self) -> str:
        return _html.card(f"deployments · {self.server}", _html.table(HEADER, self.rows))


def deployment_table(repository: str | None = None) -> DeploymentTable:
    """Versions, traffic, readiness, request counts and median latency of every model."""
    status = control.status(repository, models=False)
    if not status.running:
        return DeploymentTable([], "the local server is not running")
    with status.connect() as server:
        models = server.overview()
    rows = [
        [m.name, v.version, v.traffic, "yes" if v.ready else f"no: {v.reason}", v.requests,
         v.failures, "–" if v.p50_ms is None else v.p50_ms]
        for m in models
        for v in m.versions
    ]  # fmt: skip
    return DeploymentTable(rows, status.http_url)


@dataclass(frozen=True)
class TrafficSplit:
    """A model's traffic after a promote or rollback, shown once, in words."""

    name: str
    shares: dict[int, float]

    def __str__(self) -> str:
        parts = [f"v{v} {share:g}%" for v, share in sorted(self.shares.items())]
        return f"{self.name}: traffic now {' · '.join(parts)}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = [[f"v{v}", f"{share:g}%"] for v, share in sorted(self.shares.items())]
        return _html.card(f"{self.name} · traffic", _html.table(["version", "share"], rows))


def traffic_action(action: str, name: str, repository: str | None = None) -> TrafficSplit:
    """``promote`` or ``rollback`` the model called ``name``; the new split."""
    found = {dep.name: dep for dep in deployments(repository)}
    if name not in found:
        raise ConfigError(f"no deployment named {name!r}; deployed: {sorted(found) or 'none'}")
    dep: Deployment = found[name]
    return TrafficSplit(name, dep.promote() if action == "promote" else dep.rollback())


def stop(repository: str | None = None) -> None:
    """Stop the local server (models stay in its repository for the next start); says
    what happened, once."""
    stopped = control.stop(repository)
    print("local server stopped" if stopped else "the local server was not running")
