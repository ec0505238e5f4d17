"""Who may talk to the server: loopback by default, a token before anything else,
Host checks against DNS rebinding, on HTTP and gRPC alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import nbdeploy as nbd
from nbdeploy.errors import ServerError
from tests.servers import Endpoint, affine

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    repo = tmp_path_factory.mktemp("guarded")
    status = nbd.server.start(repo, host="0.0.0.0", http_port=0, grpc_port=0, token=TOKEN,
                              allowed_origins=["https://dash.example"])  # fmt: skip
    try:
        nbd.serve(affine(), name="affine", repository=repo)  # the state file carries the token
        yield Endpoint("nbdeploy", status.http_url.removeprefix("http://"), status.grpc_url, repo)
    finally:
        nbd.server.stop(repo)


def test_listening_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        nbd.server.start(tmp_path, host="0.0.0.0", http_port=0, grpc_port=0)


def test_http_needs_the_token_except_for_health(guarded: Endpoint) -> None:
    assert guarded.request("GET", "/v2/health/live")[0] == 200
    status, doc = guarded.request("GET", "/v2/models/affine")
    assert status == 401 and "Bearer" in doc["error"]
    assert guarded.request("GET", "/v2/models/affine", Authorization="Bearer wrong")[0] == 401
    status, doc = guarded.request("GET", "/v2/models/affine", Authorization=f"Bearer {TOKEN}")
    assert status == 200 and doc["name"] == "affine"
    assert guarded.request("POST", "/v2/repository/models/affine/unload")[0] == 401


def test_grpc_needs_the_token(guarded: Endpoint) -> None:
    client = grpcclient.InferenceServerClient(guarded.grpc)
    assert client.is_server_live()
    with pytest.raises(InferenceServerException, match="Bearer"):
        client.get_model_metadata("affine")
    dep = nbd.deployments(guarded.repository)[0]
    x = np.ones((1, 3), np.float32)
    item = grpcclient.InferInput("x", [1, 3], "FP32")
    item.set_data_from_numpy(x)
    assert dep.client("grpc").infer("affine", [item]).as_numpy("y").shape == (1, 2)


def test_foreign_host_headers_are_refused_without_a_token(local: Endpoint) -> None:
    status, doc = local.request("GET", "/v2/models/affine", Host="evil.example:8000")
    assert status == 403 and "Host 'evil.example:8000'" in doc["error"]
    assert local.request("GET", "/v2/models/affine", Host="localhost:1")[0] == 200
    assert local.request("GET", "/v2/models/affine", Host="[::1]:1")[0] == 200


def test_the_state_file_is_private(local: Endpoint) -> None:
    assert (local.repository / "server.json").stat().st_mode & 0o077 == 0


def test_grpc_streams_need_the_token_too(guarded: Endpoint) -> None:
    import queue

    errors: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(guarded.grpc)
    client.start_stream(callback=lambda result, error: errors.put(error))
    try:
        item = grpcclient.InferInput("x", [1, 3], "FP32")
        item.set_data_from_numpy(np.ones((1, 3), np.float32))
        # The refusal can close the stream before this request is even sent.
        with contextlib.suppress(InferenceServerException):
            client.async_stream_infer("affine", [item])
        error = errors.get(timeout=30)
    finally:
        client.stop_stream()
    assert error is not None and "Bearer" in str(error)


def _post(endpoint: Endpoint, path: str, body: str = "{}", **headers: str) -> tuple[int, Any]:
    return endpoint.request("POST", path, body, **headers)


def test_pages_of_other_origins_cannot_change_state(local: Endpoint) -> None:
    unload = "/v2/repository/models/affine/unload"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        status, doc = _post(local, unload, Origin="http://attacker.example",
                            Content_Type=content_type)  # fmt: skip
        assert status == 403 and "origin 'http://attacker.example'" in doc["error"], doc
    for origin in ("null", "file://", "http://127.0.0.1.attacker.example", "ftp://localhost"):
        assert local.request("GET", "/v2/models/affine", Origin=origin)[0] == 403, origin
    own = f"http://{local.http}"
    for origin in (own, "http://localhost:8888", "http://127.0.0.1:3000", "http://[::1]:80"):
        assert local.request("GET", "/v2/models/affine", Origin=origin)[0] == 200, origin
    assert local.request("GET", "/v2/models/affine/ready")[0] == 200  # still served


def test_browser_simple_bodies_are_refused_even_without_an_origin(local: Endpoint) -> None:
    status, doc = _post(local, "/v2/repository/models/affine/unload", Content_Type="text/plain")
    assert status == 415 and "application/json" in doc["error"]
    assert local.request("GET", "/v2/models/affine/ready")[0] == 200


def test_configured_origins_are_allowed_with_the_token(guarded: Endpoint) -> None:
    auth = f"Bearer {TOKEN}"
    ok = guarded.request("GET", "/v2/models/affine", Origin="https://dash.example",
                         Authorization=auth)  # fmt: skip
    assert ok[0] == 200
    refused = guarded.request("GET", "/v2/models/affine", Origin="https://evil.example",
                              Authorization=auth)  # fmt: skip
    assert refused[0] == 403


def test_tokens_that_cannot_travel_in_a_header(guarded: Endpoint, tmp_path: Path) -> None:
    import subprocess
    import sys

    with pytest.raises(nbd.ConfigError, match="printable ASCII"):
        nbd.server.start(tmp_path, http_port=0, grpc_port=0, token="pässwort")
    assert not nbd.server.status(tmp_path).running
    env = {**__import__("os").environ, "NBDEPLOY_TOKEN": "pässwort"}
    serve = subprocess.run([sys.executable, "-m", "nbdeploy.server", str(tmp_path),
                            "--http-port", "0", "--grpc-port", "0"], env=env,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert serve.returncode == 1 and "printable ASCII" in serve.stderr
    status, doc = guarded.request("GET", "/v2/models/affine", Authorization="Bearer p\xe4ss")
    assert status == 401 and "Bearer" in doc["error"]


ATTACK = """<!doctype html><title>cat pictures</title>
<form id="form" method="POST" enctype="text/plain"
      action="{server}/v2/repository/models/victim/load">
  <input name='{{"parameters": {{"x": "' value='"}}}}'></form>
<script>
  const unload = "{server}/v2/repository/models/victim/unload";
  Promise.allSettled([
    fetch(unload, {{method: "POST", mode: "no-cors", body: "{{}}"}}),
    fetch(unload, {{method: "POST", mode: "no-cors", body: new Blob(["{{}}"])}}),
    fetch(unload, {{method: "POST", mode: "no-cors"}}),
  ]).then(() => {{ document.title = "sent"; }});
</script>"""


@contextlib.contextmanager
def _page_server(html: str) -> Iterator[int]:
    """A plain web server on loopback answering every GET with ``html``; its port."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _attack(page: Any, url: str) -> None:
    """Open the attacking page, let its fetches settle, then submit its form."""
    page.goto(url)
    page.wait_for_function("document.title === 'sent'")
    with page.expect_navigation():
        page.evaluate("document.getElementById('form').submit()")


def test_a_page_on_another_site_cannot_unload_a_model_in_a_real_browser(tmp_path: Path) -> None:
    """chromium visits http://attacker.example (resolved to loopback) whose page fires a
    form and three no-cors fetches at the server: the model stays. The same page served
    from a loopback origin, which the rule allows, does unload it — so the requests did
    reach the server, and the Origin rule is what stopped them."""
    from tests.browser import browser_page

    status = nbd.server.start(tmp_path, http_port=0, grpc_port=0)
    try:
        nbd.serve(affine(), name="victim", repository=tmp_path)
        endpoint = Endpoint("nbdeploy", status.http_url.removeprefix("http://"), "", tmp_path)
        resolve = "--host-resolver-rules=MAP attacker.example 127.0.0.1"
        with (
            _page_server(ATTACK.format(server=status.http_url)) as port,
            browser_page(resolve) as page,
        ):
            _attack(page, f"http://attacker.example:{port}/")
            assert endpoint.request("GET", "/v2/models/victim/ready")[0] == 200
            assert "origin 'http://attacker.example" in page.content()  # the form's answer
            _attack(page, f"http://127.0.0.1:{port}/")
            assert endpoint.request("GET", "/v2/models/victim/ready")[0] == 400
    finally:
        nbd.server.stop(tmp_path)
