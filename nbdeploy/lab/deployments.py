"""What the deployments sidebar shows and does, over each local server's own API (no
Jupyter in here: plain functions the handlers run in a thread).

Every running server of this user is shown (the registry of :func:`control.running`),
whatever repository it serves; each action names the server it is for by its
repository, and is refused for a repository no running server serves. One poll asks
each server for its overview and index; the snippets of a version are made once per
load of it (they need its example and metadata)."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import snippets
from ..errors import ServerError
from ..server import control
from ..server.client import LocalServer, ModelOverview
from . import plans

log = logging.getLogger(__name__)

__all__ = ["ACTIONS", "EXTRAS", "START_HINT", "act", "extra", "overview", "try_request", "try_send"]

ACTIONS = (*plans.ACTIONS, "load")
EXTRAS = ("example", "report.html", "report.csv")
POLL_TIMEOUT_S = 10.0  # a server that does not answer a poll in this time is shown as such
START_HINT = (
    "No nbdeploy server is running. Start one from a notebook: %load_ext nbdeploy, "
    "then %deploy model --example x; or nbd.serve(model, example=x)."
)


def overview() -> dict[str, Any]:
    """Every running server (the default repository's first) with, per model, its
    versions (traffic, counts, latency, the last minutes, lineage, snippets), its
    versions on disk, and what promote, rollback and unload would change."""
    servers = [_server(status) for status in control.running()]
    return {"now": time.time(), "servers": servers, "start_hint": START_HINT}


def act(
    repository: str, name: str, action: str, traffic: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Promote, roll back, unload, or ``load`` (with ``traffic``: shares by version, as
    Undo restores them) one model of the server of ``repository``. Returns the split
    before, so the caller can offer Undo."""
    if action not in ACTIONS:
        raise ServerError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", status=400)
    with _connect(repository) as server:
        before = _split(server, name)
        if action == "unload":
            server.unload(name)
        elif action == "load":
            if not traffic:
                raise ServerError("load needs 'traffic': shares by version", status=400)
            server.load(name, traffic={int(v): float(s) for v, s in traffic.items()})
        else:
            server.set_traffic(name, action)
        after = _split(server, name)
    return {"before": _keys(before), "after": _keys(after)}


def try_request(repository: str, name: str, version: int) -> dict[str, Any]:
    """What the Try-it editor starts with: the version's stored example request (else
    zeros of its input shapes), where it came from, and its inputs, each with how an
    uploaded picture would fill it when it is image-shaped."""
    status = _find(repository)
    inputs = _metadata(status.http_url, status.token, name, version)["inputs"]
    with LocalServer(status.http_url, token=status.token) as server:
        example = _example(server, name, version)
    body = example if example is not None else snippets.zeros_request(inputs)
    stored = {t["name"]: t["shape"] for t in body["inputs"]}
    source = (
        f"the example v{version} was deployed with"
        if example is not None
        else "zeros of the model's input shapes (this version keeps no example)"
    )
    rows = [
        {
            **spec,
            "image": snippets.image_layout(
                spec["shape"], spec["datatype"], stored.get(spec["name"])
            ),
        }
        for spec in inputs
    ]
    return {"body": body, "source": source, "inputs": rows}


def try_send(repository: str, name: str, version: int, body: Any) -> dict[str, Any]:
    """Send ``body`` (a V2 JSON inference request) to one version: its response, the
    round trip in milliseconds, and each output's shape and first values."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ServerError(
            'the request must be a JSON object with "inputs": [...] (KServe V2)', status=400
        )
    with _connect(repository) as server:
        response, ms = server.infer_json(name, body, version=version)
    outputs = [
        {
            "name": o.get("name"),
            "datatype": o.get("datatype"),
            "shape": o.get("shape"),
            "first": list(o.get("data", [])[:8]),
            "size": len(o.get("data", [])),
        }
        for o in response.get("outputs", [])
    ]
    return {"ms": round(ms, 3), "version": version, "outputs": outputs, "response": response}


def extra(repository: str, name: str, version: int, key: str) -> bytes:
    """One of a version's extras (its example request, the comparison report)."""
    if key not in EXTRAS:
        raise ServerError(f"no extra {key!r}; versions keep {', '.join(EXTRAS)}", status=404)
    with _connect(repository) as server:
        return server.extra(name, version, key)


# -- one server ------------------------------------------------------------------------


def _server(status: control.ServerStatus) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "repository": str(status.repository),
        "label": _label(status.repository),
        "default": status.repository == control.resolve(),
        "http_url": status.http_url,
        "grpc_url": status.grpc_url,
        "metrics_url": status.metrics_url,
        "error": "",
        "models": [],
    }
    try:
        with LocalServer(status.http_url, token=status.token, timeout=POLL_TIMEOUT_S) as server:
            models = server.overview()
            on_disk = _on_disk(server.index())
            doc["models"] = [_model(status, server, m, on_disk.get(m.name, [])) for m in models]
    except ServerError as err:
        doc["error"] = f"not answering: {err}"
    return doc


def _model(
    status: control.ServerStatus, server: LocalServer, model: ModelOverview, on_disk: list[int]
) -> dict[str, Any]:
    split = model.traffic
    versions = []
    for v in model.versions:
        row = v.to_dict() | {"role": _role(v.version, v.ready, split)}
        row["snippets"] = (
            _snippets(
                status.http_url,
                status.token,
                model.name,
                v.version,
                v.loaded_at,
                "example" in v.extras,
            )
            if v.ready
            else {}
        )
        versions.append(row)
    return {
        "name": model.name,
        "ready": model.ready,
        "reason": model.reason,
        "infer_url": f"{status.http_url}/v2/models/{model.name}/infer",
        "on_disk": on_disk,
        "split": plans.split_text(split),
        "versions": versions,
        "actions": {a: p.to_dict() for a, p in plans.plans(model.name, split, on_disk).items()},
    }


def _role(version: int, ready: bool, split: Mapping[int, float]) -> str:
    """``serving`` (the only one), ``stable`` (the largest share), ``canary`` (a smaller
    share), ``standby`` (loaded at 0%), or ``not ready``."""
    if not ready:
        return "not ready"
    share = split.get(version, 0.0)
    if share == 0:
        return "standby"
    if sum(1 for s in split.values() if s > 0) == 1:
        return "serving"
    stable = max((v for v, s in split.items() if s > 0), key=lambda v: (split[v], -v))
    return "stable" if version == stable else "canary"


@functools.lru_cache(maxsize=256)
def _snippets(
    http_url: str, token: str | None, name: str, version: int, loaded_at: float, has_example: bool
) -> dict[str, str]:
    """The copy buttons' texts, made once per load of a version (``loaded_at`` keys it)."""
    try:
        inputs = _metadata(http_url, token, name, version)["inputs"]
        with LocalServer(http_url, token=token, timeout=POLL_TIMEOUT_S) as server:
            example = _example(server, name, version) if has_example else None
    except ServerError as err:
        log.warning("no snippets for %s v%d: %s", name, version, err)
        return {}
    return {
        "python": snippets.python(http_url, name, version, inputs, example),
        "curl": snippets.curl(http_url, name, version, inputs, example),
    }


# -- calls -----------------------------------------------------------------------------


def _find(repository: str) -> control.ServerStatus:
    """The running server of ``repository``; a 404 if none serves it."""
    wanted = control.resolve(repository)
    for status in control.running():
        if status.repository == wanted:
            return status
    raise ServerError(
        f"no running nbdeploy server serves {repository} (was it stopped?)", status=404
    )


def _connect(repository: str) -> LocalServer:
    status = _find(repository)
    return LocalServer(status.http_url, token=status.token)


def _metadata(http_url: str, token: str | None, name: str, version: int) -> dict[str, Any]:
    """The model's V2 metadata (inputs and outputs with datatypes and shapes): a plain V2
    GET, since the typed client covers nbdeploy's own API and inference goes elsewhere."""
    import httpx

    url = f"{http_url}/v2/models/{quote(name, safe='')}/versions/{version}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=POLL_TIMEOUT_S)
    except httpx.HTTPError as err:
        raise ServerError(f"cannot reach the server at {http_url}: {err}") from err
    if response.is_error:
        raise ServerError(
            f"no metadata for {name} v{version}: {response.text}", status=response.status_code
        )
    doc: dict[str, Any] = response.json()
    return doc


def _example(server: LocalServer, name: str, version: int) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(server.extra(name, version, "example"))
    except ServerError as err:
        if err.status == 404:
            return None
        raise
    return doc


def _split(server: LocalServer, name: str) -> dict[int, float]:
    for model in server.overview():
        if model.name == name:
            return model.traffic
    raise ServerError(f"the server has no model {name!r}", status=404)


def _on_disk(index: list[dict[str, str]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row in index:
        if row.get("version"):
            found.setdefault(row["name"], []).append(int(row["version"]))
    return {name: sorted(versions) for name, versions in found.items()}


def _keys(split: Mapping[int, float]) -> dict[str, float]:
    return {str(v): s for v, s in sorted(split.items())}


def _label(repository: Path) -> str:
    home = Path.home()
    return (
        f"~/{repository.relative_to(home)}" if repository.is_relative_to(home) else str(repository)
    )
