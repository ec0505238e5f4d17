"""One typed client for the local server's own API, in httpx's style: the notebook,
``nbd.serve``, ``%deploy list`` and the JupyterLab sidebar all talk to the server
through it (inference itself goes through tritonclient, as any client's would).

    >>> server = LocalServer("http://127.0.0.1:8000")      # doctest: +SKIP
    >>> [m.name for m in server.overview()]                # doctest: +SKIP

Its ``transport`` is injectable, so tests can run it against the app in process.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import ServerError

if TYPE_CHECKING:
    import httpx

__all__ = ["LoadResult", "LocalServer", "ModelOverview", "VersionOverview"]


@dataclass(frozen=True)
class VersionOverview:
    """One version of a model on the server.

    Attributes:
        version: Its number.
        ready: Whether it is loaded and answering.
        traffic: Its share of the requests that name no version (percent).
        requests: Requests answered since it was loaded.
        failures: Requests that failed.
        p50_ms: Median latency over recent requests (``None`` before the first).
        p95_ms: 95th percentile latency.
        reason: Why it is not ready (a damaged file, ...), else ``""``.
        requests_per_s: Requests per second over the last minute.
        loaded_at: When it was loaded (epoch seconds).
        history: The last minutes, one ``{"t", "requests", "failures", "p50_ms",
            "p95_ms"}`` per 10-second window that saw requests (oldest first).
        source: The model it was exported from, e.g. ``"torch.nn.Sequential (torch 2.13)"``.
        steps: What made it, e.g. ``("export (dynamo)", "quantize int8-dynamic")``.
        parity: Its last parity verdict, e.g. ``"ok vs torch: max abs 2e-07"``.
        extras: What its folder keeps beside the model: ``"example"`` (a request to try
            it with), ``"report.html"``/``"report.csv"`` (the comparison that chose it).
    """

    version: int
    ready: bool
    traffic: float
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    reason: str = ""
    requests_per_s: float = 0.0
    loaded_at: float = 0.0
    history: tuple[dict[str, Any], ...] = ()
    source: str = ""
    steps: tuple[str, ...] = ()
    parity: str = ""
    extras: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> VersionOverview:
        """From the overview's JSON row (fields this client does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in row.items() if k in known}  # fmt: skip
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class ModelOverview:
    """A model on the server and its versions (see :meth:`LocalServer.overview`)."""

    name: str
    ready: bool
    versions: tuple[VersionOverview, ...]
    reason: str = ""

    @property
    def traffic(self) -> dict[int, float]:
        """Shares by loaded version."""
        return {v.version: v.traffic for v in self.versions if v.ready}

    @property
    def serving(self) -> int | None:
        """The newest version that takes traffic, if any."""
        return max((v.version for v in self.versions if v.ready and v.traffic > 0), default=None)


@dataclass(frozen=True)
class LoadResult:
    """What a load of staged files gave: the version the server numbered, and traffic."""

    name: str
    version: int
    traffic: dict[int, float]


class LocalServer:
    """A client for the local server's own API (health, repository, traffic, overview).

    Args:
        url: The server's HTTP base URL (``http://127.0.0.1:8000``).
        token: Bearer token, if the server needs one.
        transport: An ``httpx`` transport (tests pass one that calls the app in process).
        timeout: Seconds to wait for an answer (loads of large models take a while).

    Raises:
        ServerError: From every call the server refused (with its ``status`` and
            message) or that did not reach it (``status`` ``None``).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 120.0,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, transport=transport, timeout=timeout
        )

    def live(self) -> bool:
        """Whether the server answers at all."""
        try:
            self._call("GET", "/v2/health/live")
        except ServerError:
            return False
        return True

    def ready(self) -> bool:
        """Whether every model the server was restoring is loaded (Triton's readiness)."""
        try:
            self._call("GET", "/v2/health/ready")
        except ServerError as err:
            if err.status is None:
                raise
            return False
        return True

    def index(self) -> list[dict[str, str]]:
        """Triton's repository index: every version on disk, its state and reason."""
        rows: list[dict[str, str]] = self._call("POST", "/v2/repository/index", {})
        return rows

    def overview(self) -> list[ModelOverview]:
        """Every model with its versions, traffic, counts and latency, in one call."""
        doc = self._call("GET", "/v2/nbdeploy/overview")
        return [
            ModelOverview(m["name"], m["ready"],
                          tuple(map(VersionOverview.from_dict, m["versions"])), m["reason"])
            for m in doc["models"]
        ]  # fmt: skip

    def load(
        self,
        name: str,
        *,
        config: dict[str, Any] | None = None,
        staged: str | None = None,
        version: int | None = None,
        canary: float | None = None,
        traffic: dict[int, float] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> LoadResult | None:
        """Load a model (Triton's repository load, with nbdeploy's parameters): with
        ``staged``, the files of a new version under the repository's staging area,
        which the server moves in and numbers (``version``, or the next); ``files`` are
        Triton's file overrides (``"labels.txt"`` -> bytes), small files in the request."""
        params: dict[str, Any] = {"config": json.dumps(config)} if config is not None else {}
        params |= {f"file:{path}": base64.b64encode(data).decode()
                   for path, data in (files or {}).items()}  # fmt: skip
        extra = {"staged": staged, "version": version, "canary": canary}
        params |= {key: value for key, value in extra.items() if value is not None}
        if traffic is not None:
            params["traffic"] = json.dumps({str(v): s for v, s in traffic.items()})
        doc = self._call("POST", f"{_model(name)}/load", {"parameters": params})
        if doc is None:
            return None
        return LoadResult(doc["name"], int(doc["version"]), _shares(doc["traffic"]))

    def unload(self, name: str) -> None:
        """Stop serving ``name``; its files stay, and a restart does not bring it back."""
        self._call("POST", f"{_model(name)}/unload", {})

    def traffic(self, name: str) -> dict[int, float]:
        """Shares of the requests that name no version, by version."""
        return _shares(self._call("GET", f"/v2/models/{quote(name)}/traffic")["traffic"])

    def set_traffic(
        self, name: str, action: str = "set", shares: dict[int, float] | None = None
    ) -> dict[int, float]:
        """``promote``, ``rollback``, or ``set`` explicit shares; returns the new split."""
        body = {"action": action, "traffic": {str(v): s for v, s in (shares or {}).items()}}
        return _shares(self._call("POST", f"{_model(name)}/traffic", body)["traffic"])

    def stats(self, name: str) -> list[dict[str, Any]]:
        """Triton's statistics for every loaded version of ``name``."""
        rows: list[dict[str, Any]] = self._call("GET", f"/v2/models/{quote(name)}/stats")[
            "model_stats"
        ]
        return rows

    def metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """KServe V2 model metadata: inputs and outputs with datatype and shape."""
        path = f"/v2/models/{quote(name, safe='')}"
        doc: dict[str, Any] = self._call("GET", path + (f"/versions/{version}" if version else ""))
        return doc

    def extra(self, name: str, version: int, key: str) -> bytes:
        """One of a version's extras (``"example"``, ``"report.html"``, ``"report.csv"``)."""
        path = f"/v2/nbdeploy/models/{quote(name, safe='')}/versions/{version}/{quote(key)}"
        return self._request("GET", path).content

    def infer_json(
        self, name: str, body: Mapping[str, Any], version: int | None = None
    ) -> tuple[dict[str, Any], float]:
        """One V2 JSON inference request as a browser would send it: the response
        document and the round trip in milliseconds (a "Try it" button's call)."""
        import time

        path = f"/v2/models/{quote(name, safe='')}"
        path += f"/versions/{version}/infer" if version is not None else "/infer"
        started = time.perf_counter()
        response = self._request("POST", path, body)
        return response.json(), (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalServer({self.url!r})"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._request(method, path, body)
        return response.json() if response.content else None

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        import httpx

        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise ServerError(f"cannot reach the server at {self.url}: {err}") from err
        if response.is_error:
            raise ServerError(_message(response), status=response.status_code)
        return response


def _model(name: str) -> str:
    return f"/v2/repository/models/{quote(name, safe='')}"


def _shares(doc: dict[str, Any]) -> dict[int, float]:
    return {int(v): float(s) for v, s in doc.items()}


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text or f"HTTP {response.status_code}"
