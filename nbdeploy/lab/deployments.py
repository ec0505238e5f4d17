"""What the deployments sidebar shows and does, over the local server's own API (no
Jupyter in here: plain functions the handlers run in a thread)."""

from __future__ import annotations

from typing import Any

from ..deployment import deployments
from ..errors import ServerError
from ..server import control

__all__ = ["act", "overview"]


def overview(repository: str | None = None) -> dict[str, Any]:
    """The server and, per model, versions with traffic, readiness, counts, latency."""
    status = control.status(repository)
    if not status.running:
        return {"running": False, "repository": str(status.repository), "models": []}
    models = [{"name": dep.name, "infer_url": dep.infer_url, "versions": dep.versions(),
               "snippet": _snippet(dep)} for dep in deployments(repository)]  # fmt: skip
    return {
        "running": True, "repository": str(status.repository), "http_url": status.http_url,
        "grpc_url": status.grpc_url, "metrics_url": status.metrics_url, "models": models,
    }  # fmt: skip


def act(name: str, action: str, repository: str | None = None) -> dict[str, Any]:
    """Promote, roll back or unload one model; returns the new overview."""
    from tritonclient.utils import InferenceServerException

    found = {dep.name: dep for dep in deployments(repository)}
    if name not in found:
        raise ServerError(f"no deployment named {name!r}", status=404)
    dep = found[name]
    try:
        if action == "promote":
            dep.promote()
        elif action == "rollback":
            dep.rollback()
        elif action == "unload":
            dep.client().unload_model(name)
        else:
            raise ServerError(f"unknown action {action!r}", status=400)
    except InferenceServerException as err:  # tritonclient's unload: its own exception
        raise ServerError(err.message(), status=409) from err
    return overview(repository)


def _snippet(dep: Any) -> str:
    return (
        "import tritonclient.http as httpclient\n"
        f'client = httpclient.InferenceServerClient("{dep.http_url.removeprefix("http://")}")\n'
        f'print(client.get_model_metadata("{dep.name}"))'
    )
