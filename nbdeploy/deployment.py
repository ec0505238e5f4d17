"""``nbd.serve``: put an artifact on the local server as a new version of a model, beside
the versions already serving, and get a :class:`Deployment` to call, canary, promote and
roll back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from ._deps import require
from ._feed import as_feed, v2_json_request
from .artifact import Artifact, require_onnx
from .errors import ConfigError, ProtocolError, ServerError
from .live import MIME_TYPE, TryResult, versions_html, versions_text
from .provenance import Parity
from .server import control
from .server.client import LocalServer, VersionOverview
from .server.layout import EXTRAS, STAGING
from .types import BY_V2, TensorSpec

if TYPE_CHECKING:
    from .bench.results import Comparison

__all__ = ["Deployment", "deployments", "serve"]

HINT = (
    "<p><code>.try_it()</code> sends it its example; <code>.promote()</code> and "
    "<code>.rollback()</code> move its traffic</p>"
)
EXAMPLE_VALUES = 4096  # the example rows kept for "Try it" hold at most this many values


def serve(
    art: Artifact | Any,
    *,
    example: Any = None,
    name: str | None = None,
    version: int | None = None,
    canary: float | None = None,
    max_batch_size: int | None = None,
    instances: int = 1,
    dynamic_batching: bool = True,
    labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    report: Comparison | None = None,
    repository: str | os.PathLike[str] | None = None,
) -> Deployment:
    """Serve an artifact on the local server (started if none runs) as a new version.

    The new version loads beside the ones serving and takes traffic only once it is
    ready; if it fails to load, the old version keeps serving and the loader's reason
    is raised. The version it replaces stays loaded at 0% so that ``rollback()`` is
    instant (it holds its memory until the next version replaces it, or until
    ``unload_idle()``). The server numbers the version, so two kernels serving one model at once
    get two distinct versions. Versions of one model share one signature: a model with
    other inputs or outputs must be served under a new name.

    Args:
        art: An ONNX artifact; or what ``nbd.export`` takes (a path to an ``.onnx`` file,
            an ``onnx.ModelProto``, or an in-memory torch / scikit-learn model with
            ``example=``), exported first with parity checked.
        example: The model's example input, when ``art`` is an in-memory model.
        name: Model name on the server (default: the artifact's name).
        version: Version number (default: one more than any the server knows).
        canary: Percent of the requests that name no version to send to the new version
            (the rest stay on the current one); ``None`` sends all of them.
        max_batch_size: Largest batch per run (default 128 for models with a batch
            dimension, else 0).
        instances: Model runs that may execute at once.
        dynamic_batching: Merge concurrent requests into one run.
        labels: Class names of a classifier's scores, in index order: a list for the first
            output, or a dict by output name. Clients that ask for the top classes (Triton's
            classification, ``InferRequestedOutput(name, class_count=3)``) get
            ``"score:index:label"`` strings, and the card shows the names.
        report: The :func:`nbd.compare` result that chose this version: kept beside it
            (sortable HTML and CSV), linked from the sidebar's version history.
        repository: The server's model repository (default: ``nbd.server.default_repository()``).

    Returns:
        The :class:`Deployment` of the new version.

    Raises:
        UnsupportedModelError: ``art`` is neither an artifact nor a model nbdeploy exports.
        ExampleError: An in-memory model came without ``example=``.
        ConfigError: The artifact is not ONNX, or an argument is out of range.
        ServerError: The server refused the model (its message says why), e.g. its
            signature differs from the versions serving.
    """
    require("tritonclient", extra="serve", feature="nbd.serve", package="tritonclient[http,grpc]")
    from .server import config as cfg
    from .server.repository import check_model_name

    if not isinstance(art, Artifact):
        from .exporters import export

        art = export(art, example, name=name)
    require_onnx(art, "the local server", hint="Export with format='onnx', or push "
                 "TorchScript or a SavedModel to Triton with nbd.push.")  # fmt: skip
    name = name or art.name
    try:
        check_model_name(name)
    except ProtocolError as err:
        raise ConfigError(str(err)) from err
    if version is not None and version < 1:
        raise ConfigError(f"version must be 1 or more, not {version}")
    config = cfg.build_config(
        name, art.inputs, art.outputs, max_batch_size=max_batch_size, instances=instances,
        dynamic_batching=dynamic_batching, parameters=art.session_config,
    )  # fmt: skip
    by_output = _labels_by_output(art, labels)
    label_files = _label_files(config, by_output)
    status = control.start(repository)
    with status.connect() as server:
        _check_version_is_free(server, name, version)  # before staging a large model
        before = _current_traffic(server, name)
        # The server moves the staged files in, numbers the version under its lock and
        # answers with it (or drops them and says why); this kernel never writes the
        # model's folder, so a kill of either process at any instant leaves a state the
        # server serves.
        loaded = server.load(name, config=cfg.to_json(config, defaults=False), version=version,
                             canary=canary, staged=_stage(art, status.repository, report),
                             files=label_files)  # fmt: skip
        if loaded is None:
            raise ServerError("the server loaded the model but did not say as which version")
        deployment = Deployment(name, loaded.version, status, labels=by_output)
        parity = _check_through_the_wire(deployment, art, server, before)
    return replace(deployment, parity=parity)


def _labels_by_output(
    art: Artifact, labels: Sequence[str] | Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    """``labels=`` as class names by output name (a plain list is the first output's)."""
    if labels is None:
        return {}
    if isinstance(labels, str):
        raise ConfigError("labels= takes a list of class names (or a dict of them by output)")
    chosen = dict(labels) if isinstance(labels, Mapping) else {art.outputs[0].name: labels}
    outputs = [spec.name for spec in art.outputs]
    unknown = sorted(set(chosen) - set(outputs))
    if unknown:
        raise ConfigError(f"labels= names output(s) {unknown}; the model's are {outputs}")
    return {output: [str(n) for n in names] for output, names in chosen.items()}


def _label_files(config: Any, labels: Mapping[str, Sequence[str]]) -> dict[str, bytes]:
    """Triton's label files for a classifier (``label_filename`` in the config, the file
    beside it), one per output that has class names."""
    files = {}
    for output, names in labels.items():
        filename = f"labels-{output}.txt"
        next(o for o in config.output if o.name == output).label_filename = filename
        files[filename] = "".join(name.replace("\n", " ") + "\n" for name in names).encode()
    return files


def _check_version_is_free(server: LocalServer, name: str, version: int | None) -> None:
    on_disk = sorted(int(r["version"]) for r in server.index() if r["name"] == name
                     and r["version"])  # fmt: skip
    if version is not None and version in on_disk:
        raise ConfigError(
            f"version {version} of '{name}' is taken; versions on disk: {on_disk}. Leave "
            "version= out and the server numbers the new one"
        )


def _current_traffic(server: LocalServer, name: str) -> dict[int, float]:
    try:
        return server.traffic(name)
    except ServerError as err:
        if err.status == 404:
            return {}
        raise


def _check_through_the_wire(
    dep: Deployment, art: Artifact, server: LocalServer, before: dict[int, float]
) -> Parity | None:
    """The new version's answers through the server, against the artifact's; if they
    differ, or the server cannot run what the artifact runs, the version is taken out of
    traffic again and the error says so."""
    from tritonclient.utils import InferenceServerException

    from .triton.client import wire_parity

    client = dep.client()
    try:
        parity = wire_parity(client, art, dep.name, dep.version, "the local server")
    except InferenceServerException as err:
        _restore(server, dep.name, before)
        raise ServerError(
            f"'{dep.name}' v{dep.version} loaded but could not answer the artifact's own "
            f"example through the server ({err.message()}); it no longer takes traffic",
            status=int(code) if (code := str(err.status() or "")).isdigit() else None,
        ) from err
    finally:  # here, in this thread: tritonclient's pool cannot be closed from another
        client.close()
    if parity is None or parity.ok:
        return parity
    _restore(server, dep.name, before)
    raise ServerError(
        f"'{dep.name}' v{dep.version} answers differently through the server than the "
        f"artifact does ({parity}); it no longer takes traffic (the split is back to "
        f"{before or 'unloaded'}). Check the artifact's session_config.",
        parity=parity,
    )


def _restore(server: LocalServer, name: str, before: dict[int, float]) -> None:
    """The traffic split as it was before a new version was loaded."""
    if before:
        server.set_traffic(name, "set", before)
    else:
        server.unload(name)


def _stage(art: Artifact, repository: Path, report: Comparison | None = None) -> str:
    """Save the artifact into a fresh folder of the repository's staging area, with its
    extras: a request to try it with (the example's first rows) and the comparison that
    chose it. Returns the folder's name."""
    area = repository / STAGING
    folder: Path | None = None
    try:
        area.mkdir(exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="serve-", dir=area))
        art.save(folder / "model.onnx")
        _write_extras(folder, art, report)
    except OSError as err:
        if folder is not None:  # ours alone: nothing names it yet
            shutil.rmtree(folder, ignore_errors=True)
        raise ServerError(
            f"the repository {repository} is not writable: {err.strerror or err}; free some "
            "space or fix its permissions, then serve again (nothing was changed)",
            status=503,
        ) from err
    return folder.name


def _write_extras(folder: Path, art: Artifact, report: Comparison | None) -> None:
    if art.example:
        request = v2_json_request(art.example, art.inputs, max_values=EXAMPLE_VALUES)
        (folder / EXTRAS["example"]).write_text(json.dumps(request))
    if report is not None:
        report.to_html(folder / EXTRAS["report.html"])
        report.to_csv(folder / EXTRAS["report.csv"])


def deployments(repository: str | os.PathLike[str] | None = None) -> list[Deployment]:
    """The models the local server serves, each at its newest serving version."""
    status = control.status(repository)
    if not status.running:
        return []
    with status.connect() as server:
        models = server.overview()
    return [Deployment(m.name, m.serving, status) for m in models if m.serving is not None]


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
    parity: Parity | None = field(default=None, repr=False)
    labels: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @property
    def live(self) -> control.ServerStatus:
        """The server as it is now: a restart that had to move ports is followed (the
        repository's state file says where it listens), so this object keeps working."""
        current = control.status(self.server.repository, models=False)
        return current if current.running else self.server

    @property
    def http_url(self) -> str:
        return self.live.http_url

    @property
    def grpc_url(self) -> str:
        return self.live.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.live.metrics_url

    @property
    def infer_url(self) -> str:
        """The URL to POST V2 inference requests to (any version, by traffic share)."""
        return self._infer_url(self.live)

    @property
    def traffic(self) -> dict[int, float]:
        """Share of the requests that name no version, by version (live)."""
        with self.live.connect() as server:
            return server.traffic(self.name)

    def promote(self) -> dict[int, float]:
        """Send all traffic to the newest version; returns the new split."""
        with self.live.connect() as server:
            return server.set_traffic(self.name, "promote")

    def rollback(self) -> dict[int, float]:
        """Send all traffic back to the previous version and unload the newest. The
        previous version is still loaded (see :meth:`unload_idle`) unless it was
        unloaded; then it is loaded again from the repository first."""
        with self.live.connect() as server:
            return server.set_traffic(self.name, "rollback")

    def unload_idle(self) -> dict[int, float]:
        """Unload the versions that take no traffic, freeing their memory; returns the
        split, which is unchanged.

        A new version (or a promote) keeps the one it replaced loaded at 0% so that
        :meth:`rollback` is instant; only that one (older ones are unloaded), and it holds
        as much memory as the version serving. A rollback after this reloads it from the
        repository instead.
        """
        with self.live.connect() as server:
            serving = {v: share for v, share in server.traffic(self.name).items() if share > 0}
            return server.set_traffic(self.name, "set", serving)

    def stats(self) -> list[dict[str, Any]]:
        """Triton's statistics for every loaded version of this model."""
        with self.live.connect() as server:
            return server.stats(self.name)

    def versions(self) -> list[VersionOverview]:
        """Every version of this model the server knows: traffic share, readiness,
        request and failure counts, p50/p95 latency in ms (``None`` before the first
        request), and why a version is not ready."""
        with self.live.connect() as server:
            found = [m for m in server.overview() if m.name == self.name]
        return list(found[0].versions) if found else []

    def try_it(self, inputs: Any = None, *, version: int | None = None) -> TryResult:
        """Send one request to this version (or ``version``) as any client would, and
        show the answer and its round trip.

        Args:
            inputs: What to send: an array, or a dict by input name; default, the
                example this version was served with (its first rows).
            version: The version to ask (default: the one this deployment made).

        Raises:
            ConfigError: No ``inputs`` and the version was served without an example.
            ServerError: The server refused the request (its message says why).
        """
        number = version or self.version
        with self.live.connect() as server:
            if inputs is None:
                body = json.loads(self._stored_example(server, number))
            else:
                specs = _specs(server.metadata(self.name, number)["inputs"])
                body = v2_json_request(as_feed(inputs, specs), specs, max_values=2**62)
            response, ms = server.infer_json(self.name, body, version=number)
        return TryResult.from_response(self.name, response, ms)

    def _stored_example(self, server: LocalServer, number: int) -> bytes:
        try:
            return server.extra(self.name, number, "example")
        except ServerError as err:
            if err.status != 404:
                raise
            raise ConfigError(f"{self.name} v{number} was served without an example; pass "
                              "the inputs: dep.try_it(x)") from err  # fmt: skip

    def client(self, protocol: Literal["http", "grpc"] = "http") -> Any:
        """A ready tritonclient client for this server (the token, if any, attached)."""
        from .triton.client import connect

        live = self.live  # one look at where the server listens now
        address = live.grpc_url if protocol == "grpc" else live.http_url.removeprefix("http://")
        return connect(address, protocol, token=live.token)

    def __str__(self) -> str:
        return self._text(self.live, self._versions_now())

    def _repr_html_(self) -> str:
        return self._html(self.live, self._versions_now())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """Text, a static HTML snapshot (what GitHub and a saved notebook show), and the
        deployment's coordinates for JupyterLab's extension, which renders it live: one
        look at the server for all three."""
        live, versions = self.live, self._versions_now()
        return {"text/plain": self._text(live, versions), "text/html": self._html(live, versions),
                MIME_TYPE: self.coordinates()}  # fmt: skip

    def coordinates(self) -> dict[str, Any]:
        """Which deployment this is, as the lab extension's live view finds it:
        ``{"name", "version", "repository", "http_url"}``."""
        return {"name": self.name, "version": self.version,
                "repository": str(self.server.repository), "http_url": self.http_url}  # fmt: skip

    def _infer_url(self, live: control.ServerStatus) -> str:
        return f"{live.http_url}/v2/models/{quote(self.name)}/infer"

    def _text(self, live: control.ServerStatus, versions: list[VersionOverview]) -> str:
        lines = [f"{self.name} v{self.version}: {self._infer_url(live)}",
                 f"  gRPC {live.grpc_url} · metrics {live.metrics_url}"]  # fmt: skip
        return "\n".join(lines + ["  " + line for line in versions_text(versions)])

    def _html(self, live: control.ServerStatus, versions: list[VersionOverview]) -> str:
        from . import _html

        metrics = escape(live.metrics_url)
        facts = [("HTTP", self._infer_url(live)), ("gRPC", live.grpc_url),
                 ("metrics", _html.Raw(f"<a href='{metrics}'>{metrics}</a>"))]  # fmt: skip
        if self.parity is not None:
            facts.append(("through the wire", _html.verdict(self.parity.ok, str(self.parity))))
        facts += [
            (f"classes of {output}", ", ".join(names)) for output, names in self.labels.items()
        ]
        table = versions_html(versions) if versions else "<p>not serving now</p>"
        body = _html.fields(facts) + table + HINT
        return _html.card(f"{self.name} · version {self.version}", body)

    def _versions_now(self) -> list[VersionOverview]:
        """The versions as the server sees them now, or none if it does not answer (a
        repr must not raise)."""
        try:
            return self.versions()
        except ServerError:
            return []


def _specs(metadata_inputs: Sequence[Mapping[str, Any]]) -> list[TensorSpec]:
    """Input specs from V2 model metadata (``-1`` dims are free)."""
    return [TensorSpec(t["name"], BY_V2[t["datatype"]].numpy,
                       tuple(None if d < 0 else int(d) for d in t["shape"]))
            for t in metadata_inputs]  # fmt: skip
