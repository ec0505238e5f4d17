"""A tiny local web server for netron's own web app and the models it shows.

Bound to 127.0.0.1 on a random port; every URL starts with a per-process secret token,
so another local user or a web page cannot read the models. Netron's page is patched as
it is served: its ``version`` meta becomes ``0.0.0`` (netron sends analytics, with the
page URL, only from a "packaged" version), its ``date`` meta is removed (netron refuses
to run 180 days after its build date), and a ``consent`` cookie is set so it does not
stop on a cookie prompt or ask a web service where the user is.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .._deps import require

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def shown_dir() -> Path:
    """Where shown models are left for JupyterLab's server extension to serve (the kernel
    and the Jupyter server are different processes): ``<jupyter runtime dir>/nbdeploy-models``,
    readable by this user only."""
    import os

    runtime = os.environ.get("JUPYTER_RUNTIME_DIR")
    if not runtime:
        try:
            from jupyter_core.paths import jupyter_runtime_dir

            runtime = jupyter_runtime_dir()
        except ImportError:
            runtime = str(Path("~/.local/share/jupyter/runtime").expanduser())
    folder = Path(runtime) / "nbdeploy-models"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def netron_dir() -> Path:
    """The folder of netron's web app inside the installed ``netron`` package."""
    netron = require("netron", extra="lab", feature="Showing a graph with netron")
    return Path(str(netron.__file__)).parent


def patched_index(folder: Path) -> bytes:
    """Netron's index.html without analytics, expiry date and (with the cookie) prompt."""
    html = (folder / "index.html").read_text(encoding="utf-8")
    html = re.sub(
        r'<meta name="version" content="[^"]*"\s*/?>', '<meta name="version" content="0.0.0">', html
    )
    html = re.sub(r'<meta name="date" content="[^"]*"\s*/?>\s*', "", html)
    return html.encode()


@dataclass(frozen=True)
class _Model:
    filename: str
    data: bytes


class NetronServer:
    """Serves netron and registered model bytes on 127.0.0.1 until the process ends."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(24)
        self.folder = netron_dir()
        self.index = patched_index(self.folder)
        self.models: dict[str, _Model] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        threading.Thread(
            target=self._httpd.serve_forever, name="nbdeploy-netron", daemon=True
        ).start()
        log.info("netron server on 127.0.0.1:%d", self.port)

    @property
    def base(self) -> str:
        """Root URL, token included."""
        return f"http://127.0.0.1:{self.port}/{self.token}"

    def register(self, filename: str, data: bytes) -> str:
        """Make model bytes available; returns the id used in URLs. The same bytes under
        the same name get the same id, so showing a model again holds no second copy."""
        model_id = hashlib.sha256(filename.encode() + b"\0" + data).hexdigest()[:16]
        if model_id not in self.models:
            self.models[model_id] = _Model(filename, data)
            _leave_for_lab(model_id, data)
        return model_id

    def viewer_url(self, model_id: str) -> str:
        """The URL of netron's page showing a registered model."""
        model = self.models[model_id]
        return f"{self.base}/netron/index.html?url=/{self.token}/models/{model_id}/{model.filename}"

    def shutdown(self) -> None:
        """Stop serving (tests; the server otherwise lives as long as the process)."""
        self._httpd.shutdown()
        self._httpd.server_close()


def _leave_for_lab(model_id: str, data: bytes) -> None:
    """Write the bytes where JupyterLab's server extension serves them from."""
    import os

    try:
        path = shown_dir() / f"{model_id}.onnx"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except OSError as err:  # the iframe and the drawing still work
        log.warning("could not leave the model for JupyterLab: %s", err)


def _handler(server: NetronServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve(send_body=True)

        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def _serve(self, *, send_body: bool) -> None:
            parts = unquote(urlsplit(self.path).path).split("/")
            if len(parts) < 4 or not secrets.compare_digest(parts[1], server.token):
                return self._reply(404, b"not found", "text/plain", send_body)
            kind, rest = parts[2], parts[3:]
            if kind == "netron" and len(rest) == 1:
                return self._asset(rest[0], send_body)
            if kind == "models" and len(rest) == 2 and rest[0] in server.models:
                model = server.models[rest[0]]
                if rest[1] == model.filename:
                    return self._reply(200, model.data, "application/octet-stream", send_body)
            return self._reply(404, b"not found", "text/plain", send_body)

        def _asset(self, name: str, send_body: bool) -> None:
            # One path segment of safe characters: nothing outside netron's folder.
            if name in ("", "index.html"):
                cookie = (
                    f"consent={int(time.time() * 1000)}; Path=/{server.token}/; SameSite=Strict"
                )
                return self._reply(200, server.index, "text/html; charset=utf-8", send_body, cookie)
            path = server.folder / name
            if not _SAFE_NAME.match(name) or not path.is_file():
                return self._reply(404, b"not found", "text/plain", send_body)
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self._reply(200, path.read_bytes(), kind, send_body)

        def _reply(
            self, status: int, body: bytes, kind: str, send_body: bool, cookie: str | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if cookie:
                self.send_header("Set-Cookie", cookie)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("netron server: " + format, *args)

    return Handler


_server: NetronServer | None = None
_lock = threading.Lock()


def server() -> NetronServer:
    """The process's netron server, started on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = NetronServer()
        return _server
