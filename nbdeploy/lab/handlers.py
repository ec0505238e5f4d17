"""The server extension's handlers, all authenticated (every verb, HEAD included):

* ``nbdeploy/netron/<file>``       netron's web app, patched as in :mod:`nbdeploy.graph.netron`
* ``nbdeploy/files/<path>``        bytes of a model file under Jupyter's root directory
  (hidden ones only where ``ContentsManager.allow_hidden`` is set, as for ``/files``)
* ``nbdeploy/artifacts/<id>``      bytes of a model a kernel showed with ``nbd.show``
* ``nbdeploy/api/deployments``     every running local server's deployments (GET);
  ``nbdeploy/api/deployments/<name>/<promote|rollback|unload|load>`` (POST, naming the
  server by its ``repository``); ``.../<name>/try`` (GET the request to start with, POST
  one to a version); ``.../<name>/versions/<v>/<example|report.html|report.csv>`` (GET)
"""

from __future__ import annotations

import abc
import json
import mimetypes
import os
import re
import time
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_core.paths import is_hidden
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join

from ..errors import ServerError
from ..graph import netron
from . import deployments

_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODEL_ID = re.compile(r"^[0-9a-f]{16}$")
MODEL_SUFFIXES = (".onnx", ".ort", ".pb", ".tflite", ".pt", ".pth", ".json")


class _Authenticated(JupyterHandler, metaclass=abc.ABCMeta):
    """HEAD is answered like GET, after the same authentication."""

    @tornado.web.authenticated
    def head(self, path: str) -> None:
        self._send(path, body=False)

    @tornado.web.authenticated
    def get(self, path: str) -> None:
        self._send(path, body=True)

    @abc.abstractmethod
    def _send(self, path: str, body: bool) -> None:
        """Answer for ``path``, with the body (GET) or only the headers (HEAD)."""

    def _bytes(self, data: bytes, kind: str, body: bool) -> None:
        self.set_header("Content-Type", kind)
        self.set_header("Content-Length", str(len(data)))
        self.set_header("Cache-Control", "no-store")
        if body:
            self.finish(data)
        else:
            self.finish()


class NetronHandler(_Authenticated):
    """Netron's web app from the installed ``netron`` package."""

    def _send(self, name: str, body: bool) -> None:
        folder = netron.netron_dir()
        if name in ("", "index.html"):
            # netron asks for cookie consent unless this is set (it then stays local).
            self.set_cookie(
                "consent",
                str(int(time.time() * 1000)),
                path=self.request.path.rsplit("/", 1)[0] + "/",
            )
            return self._bytes(netron.patched_index(folder), "text/html; charset=utf-8", body)
        path = folder / name
        if not _ASSET.match(name) or not path.is_file():
            raise tornado.web.HTTPError(404)
        self._bytes(
            path.read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream", body
        )


class FileHandler(_Authenticated):
    """A model file under Jupyter's root directory: never outside it (links included), and
    never a hidden one unless ``ContentsManager.allow_hidden`` lets Jupyter's own
    ``/files`` serve it too."""

    def _send(self, path: str, body: bool) -> None:
        if "\0" in path:
            raise tornado.web.HTTPError(
                400,
                "the file path contains a NUL character; ask for the model file by its plain path",
            )
        root = Path(self.settings["server_root_dir"]).expanduser().resolve()
        target = self._model_file(root, path)
        if target is None:
            raise tornado.web.HTTPError(
                404,
                "no such model file under Jupyter's root directory (hidden files are served "
                "only with ContentsManager.allow_hidden=True)",
            )
        self._bytes(target.read_bytes(), "application/octet-stream", body)

    def _model_file(self, root: Path, path: str) -> Path | None:
        """The model file ``path`` names, if it may be served."""
        asked = Path(os.path.normpath(root / path))
        target = (root / path).resolve()
        if not (asked.is_relative_to(root) and target.is_relative_to(root)):
            return None
        if not target.is_file() or target.suffix not in MODEL_SUFFIXES:
            return None
        # Jupyter's own rule, on the name asked for and on where its links lead.
        if not self.contents_manager.allow_hidden and (
            is_hidden(asked, root) or is_hidden(target, root)
        ):
            self.log.info("nbdeploy: refusing a hidden file (ContentsManager.allow_hidden)")
            return None
        return target


class ArtifactHandler(_Authenticated):
    """A model a kernel showed (left in the runtime dir by :func:`nbdeploy.show`)."""

    def _send(self, path: str, body: bool) -> None:
        shown = netron.shown_dir() / f"{path}.onnx"
        if not _MODEL_ID.match(path) or not shown.is_file():
            raise tornado.web.HTTPError(404, "no such shown model; run nbd.show(...) again")
        self._bytes(shown.read_bytes(), "application/octet-stream", body)


class DeploymentsHandler(APIHandler):
    """Every running local server: models, versions, traffic, the last minutes, lineage,
    snippets and what each action would change (polled by the sidebar)."""

    @tornado.web.authenticated
    def head(self) -> None:
        self.finish()

    @tornado.web.authenticated
    async def get(self) -> None:
        self.finish(json.dumps(await _in_thread(deployments.overview)))


class _DeploymentCall(APIHandler):
    """A call for one model of one server; the local server's refusals come back with
    its status and message as ``{"message": ...}``, never as a traceback."""

    async def _answer(self, function: Any, *args: Any, kind: str = "application/json") -> None:
        try:
            result = await _in_thread(function, *args)
        except ServerError as err:
            # Not HTTPError: its message would go through %-formatting ("75%").
            self.set_status(err.status if err.status and 400 <= err.status < 600 else 502)
            self.finish(json.dumps({"message": err.message}))
            return
        if isinstance(result, bytes):
            self.set_header("Cache-Control", "no-store")
            self.finish(result, set_content_type=kind)
        else:
            self.finish(json.dumps(result))

    def _body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as err:
            raise tornado.web.HTTPError(400, "the request body is not JSON") from err
        if not isinstance(body, dict) or not isinstance(body.get("repository"), str):
            raise tornado.web.HTTPError(
                400, 'name the server: {"repository": "<its model repository>", ...}'
            )
        return body


class DeploymentActionHandler(_DeploymentCall):
    """``promote``, ``rollback``, ``unload`` or ``load`` (Undo: ``traffic`` by version) one
    model of the server of ``repository``."""

    @tornado.web.authenticated
    async def post(self, name: str, action: str) -> None:
        body = self._body()
        traffic = body.get("traffic")
        if traffic is not None and not isinstance(traffic, dict):
            raise tornado.web.HTTPError(400, "'traffic' must map versions to shares")
        await self._answer(deployments.act, body["repository"], name, action, traffic)


class TryHandler(_DeploymentCall):
    """GET: the request the Try-it editor starts with (``?repository=&version=``); POST
    ``{repository, version, body}``: send it to that version, answer with the response
    and its latency."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        repository = self.get_argument("repository")
        version = _version(self.get_argument("version"))
        await self._answer(deployments.try_request, repository, name, version)

    @tornado.web.authenticated
    async def post(self, name: str) -> None:
        body = self._body()
        version = _version(body.get("version"))
        await self._answer(deployments.try_send, body["repository"], name, version,
                           body.get("body"))  # fmt: skip


class ExtraHandler(_DeploymentCall):
    """A version's extra from its server (``?repository=``): the example request, or the
    comparison report that chose it. The report is shown sandboxed: its scripts run in
    an origin of their own, away from Jupyter's cookies and API."""

    @tornado.web.authenticated
    async def get(self, name: str, version: str, key: str) -> None:
        repository = self.get_argument("repository")
        if key == "report.html":
            self.set_header("Content-Security-Policy", "sandbox allow-scripts")
        await self._answer(deployments.extra, repository, name, _version(version), key,
                           kind=EXTRA_TYPES[key])  # fmt: skip


EXTRA_TYPES = {"example": "application/json", "report.html": "text/html; charset=utf-8",
               "report.csv": "text/csv; charset=utf-8"}  # fmt: skip


def _version(text: Any) -> int:
    try:
        number = int(text)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise tornado.web.HTTPError(400, f"'version' must be a version number, not {text!r}")
    return number


async def _in_thread(function: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(function, *args)


def setup_handlers(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], "nbdeploy")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "netron", "(.*)"), NetronHandler),
        (url_path_join(base, "files", "(.+)"), FileHandler),
        (url_path_join(base, "artifacts", "([^/]+)"), ArtifactHandler),
        (url_path_join(base, "api", "deployments"), DeploymentsHandler),
        (url_path_join(base, "api", "deployments", "([^/]+)", "(promote|rollback|unload|load)"),
         DeploymentActionHandler),
        (url_path_join(base, "api", "deployments", "([^/]+)", "try"), TryHandler),
        (url_path_join(base, "api", "deployments", "([^/]+)", "versions", "([0-9]+)",
                       "(example|report\\.html|report\\.csv)"), ExtraHandler),
    ])  # fmt: skip
