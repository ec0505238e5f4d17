"""What the deployments sidebar shows and does, over the local server's own API (no
Jupyter in here: plain functions the handlers run in a thread). One call to the server
per poll: its overview."""

from __future__ import annotations

from typing import Any

from ..errors import ServerError
from ..server import control
from ..server.client import ModelOverview

__all__ = ["ACTIONS", "act", "overview"]

ACTIONS = ("promote", "rollback", "unload")


def overview(repository: str | None = None) -> dict[str, Any]:
    """The server and, per model, versions with traffic, readiness, counts, latency: the
    one serving ``repository`` if given, else the default repository's, else any other
    server of this user (a tutorial's, started with its own repository)."""
    status = control.status(repository, models=False)  # no call: the overview is the call
    if not status.running and repository is None:
        status = next(iter(control.running()), status)
    if not status.running:
        return {"running": False, "repository": str(status.repository), "models": []}
    try:
        with status.connect() as server:
            models = [_model(status, m) for m in server.overview() if m.serving is not None]
    except ServerError:
        return {"running": False, "repository": str(status.repository), "models": []}
    return {
        "running": True, "repository": str(status.repository), "http_url": status.http_url,
        "grpc_url": status.grpc_url, "metrics_url": status.metrics_url, "models": models,
    }  # fmt: skip


def act(name: str, action: str, repository: str | None = None) -> dict[str, Any]:
    """Promote, roll back or unload one model; returns the new overview."""
    if action not in ACTIONS:
        raise ServerError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", status=400)
    status = control.status(repository)
    if not status.running:
        raise ServerError("the local server is not running", status=404)
    with status.connect() as server:
        if action == "unload":
            server.unload(name)
        else:
            server.set_traffic(name, action)
    return overview(repository)


def _model(status: control.ServerStatus, model: ModelOverview) -> dict[str, Any]:
    infer_url = f"{status.http_url}/v2/models/{model.name}/infer"
    return {"name": model.name, "infer_url": infer_url,
            "versions": [v.to_dict() for v in model.versions],
            "snippet": _snippet(status.http_url, model.name)}  # fmt: skip


def _snippet(http_url: str, name: str) -> str:
    return (
        "import tritonclient.http as httpclient\n"
        f'client = httpclient.InferenceServerClient("{http_url.removeprefix("http://")}")\n'
        f'print(client.get_model_metadata("{name}"))'
    )
