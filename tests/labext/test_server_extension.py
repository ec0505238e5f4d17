"""The Jupyter server extension through a real Jupyter server (pytest-jupyter), under a
non-root base URL: every route authenticated, files confined, netron patched."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

import nbdeploy as nbd
from tests.graph.helpers import model
from tests.servers import affine, serving_affine

Fetch = Callable[..., Awaitable[Any]]
NO_TOKEN = {"Authorization": ""}


@pytest.fixture
def allow_hidden() -> bool:
    return False  # Jupyter's default; a test parametrizes it to try the other setting


@pytest.fixture
def jp_server_config(allow_hidden: bool) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbdeploy.lab": True}},
        "ContentsManager": {"allow_hidden": allow_hidden},
    }


async def _status(fetch: Fetch, *parts: str, **kwargs: Any) -> int:
    try:
        return int((await fetch(*parts, **kwargs)).code)
    except HTTPClientError as err:
        return int(err.code)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_every_route_refuses_unauthenticated_requests(jp_fetch: Fetch, method: str) -> None:
    routes = [("nbdeploy", "netron", "index.html"), ("nbdeploy", "files", "m.onnx"),
              ("nbdeploy", "artifacts", "0123456789abcdef"), ("nbdeploy", "api", "deployments"),
              ("nbdeploy", "api", "deployments", "m", "rollback"),
              ("nbdeploy", "api", "deployments", "m", "load"),
              ("nbdeploy", "api", "deployments", "m", "try"),
              ("nbdeploy", "api", "deployments", "m", "versions", "1", "report.html")]  # fmt: skip
    body = b"{}" if method == "POST" else None
    for route in routes:
        code = await _status(jp_fetch, *route, method=method, headers=NO_TOKEN, body=body,
                             follow_redirects=False)  # fmt: skip
        assert code in (302, 403, 405), (route, method, code)  # never served
        assert code != 200


async def test_netron_is_served_patched(jp_fetch: Fetch) -> None:
    response = await jp_fetch("nbdeploy", "netron", "index.html")
    page = response.body.decode()
    assert '<meta name="version" content="0.0.0">' in page and 'name="date"' not in page
    assert "consent=" in response.headers.get("Set-Cookie", "")
    head = await jp_fetch("nbdeploy", "netron", "index.html", method="HEAD")
    assert head.code == 200 and int(head.headers["Content-Length"]) == len(response.body)
    assert await _status(jp_fetch, "nbdeploy", "netron", "..%2F..%2Fsecret") == 404


async def test_model_files_are_confined_to_the_root(jp_fetch: Fetch, jp_root_dir: Path) -> None:
    data = affine().onnx.SerializeToString()
    (jp_root_dir / "models").mkdir()
    (jp_root_dir / "models" / "affine.onnx").write_bytes(data)
    (jp_root_dir / "notes.txt").write_text("not a model")
    assert (await jp_fetch("nbdeploy", "files", "models/affine.onnx")).body == data
    assert await _status(jp_fetch, "nbdeploy", "files", "notes.txt") == 404
    assert await _status(jp_fetch, "nbdeploy", "files", "../../etc/passwd") == 404


async def test_a_nul_in_the_path_is_a_clear_400(jp_fetch: Fetch, jp_root_dir: Path) -> None:
    (jp_root_dir / "m.onnx").write_bytes(affine().onnx.SerializeToString())
    for method in ("HEAD", "GET"):
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("nbdeploy", "files", "m.onnx\x00.png", method=method)
        assert caught.value.code == 400, method
    assert caught.value.response is not None  # GET's page says why
    assert "NUL character" in caught.value.response.body.decode()


@pytest.mark.parametrize("allow_hidden", [False, True])
async def test_hidden_files_follow_jupyters_allow_hidden(
    jp_fetch: Fetch, jp_root_dir: Path, jp_serverapp: Any, allow_hidden: bool
) -> None:
    assert jp_serverapp.contents_manager.allow_hidden is allow_hidden
    data = affine().onnx.SerializeToString()
    for folder in (".hidden", "models"):
        (jp_root_dir / folder).mkdir()
        (jp_root_dir / folder / "creds.json").write_text('{"token": "secret"}')
        (jp_root_dir / folder / "m.onnx").write_bytes(data)
    (jp_root_dir / "models" / ".m.onnx").write_bytes(data)
    (jp_root_dir / "models" / "link.onnx").symlink_to(jp_root_dir / ".hidden" / "m.onnx")
    hidden = [".hidden/creds.json", ".hidden/m.onnx", "models/.m.onnx", "models/link.onnx"]
    want = 200 if allow_hidden else 404
    for path in hidden:
        assert await _status(jp_fetch, "nbdeploy", "files", path) == want, path
        assert await _status(jp_fetch, "nbdeploy", "files", path, method="HEAD") == want, path
    # Jupyter's own /files answers the same for files in a dot-folder.
    assert await _status(jp_fetch, "files", ".hidden", "creds.json") == want
    assert (await jp_fetch("nbdeploy", "files", "models/m.onnx")).body == data


async def test_shown_artifacts_are_served(jp_fetch: Fetch) -> None:
    art = model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (float[N] y) { y = Relu (x) }""")
    view = nbd.show(art)
    body = (await jp_fetch("nbdeploy", "artifacts", view.model_id)).body
    assert body == art.onnx.SerializeToString()
    assert await _status(jp_fetch, "nbdeploy", "artifacts", "not-an-id") == 404


async def test_deployments_api(
    jp_fetch: Fetch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBDEPLOY_REPOSITORY", str(tmp_path / "default"))
    repo = tmp_path / "elsewhere"  # not the default repository: found all the same

    async def server() -> dict[str, Any]:
        doc = json.loads((await jp_fetch("nbdeploy", "api", "deployments")).body)
        assert "%deploy model --example x" in doc["start_hint"]
        mine = [s for s in doc["servers"] if s["repository"] == str(repo.resolve())]
        return dict(mine[0]) if mine else {}

    assert await server() == {}
    try:
        nbd.server.start(repo, http_port=0, grpc_port=0)
        nbd.serve(affine(0), name="affine", repository=repo)
        nbd.serve(affine(1), name="affine", canary=30, repository=repo)
        versions = {v["version"]: v for v in (await server())["models"][0]["versions"]}
        assert versions[2]["traffic"] == 30.0 and versions[1]["ready"]
        body = json.dumps({"repository": str(repo)}).encode()
        after = json.loads((await jp_fetch("nbdeploy", "api", "deployments", "affine", "rollback",
                                           method="POST", body=body)).body)  # fmt: skip
        assert after == {"before": {"1": 70.0, "2": 30.0}, "after": {"1": 100.0}}
        undo = json.dumps({"repository": str(repo), "traffic": after["before"]}).encode()
        await jp_fetch("nbdeploy", "api", "deployments", "affine", "load", method="POST", body=undo)
        assert [v["traffic"] for v in (await server())["models"][0]["versions"]] == [70.0, 30.0]
        for name, payload, code in [
            ("nope", body, 404),  # the server's own 404
            ("affine", b"{}", 400),  # no server named
            ("affine", json.dumps({"repository": str(tmp_path)}).encode(), 404),  # none there
        ]:
            status = await _status(jp_fetch, "nbdeploy", "api", "deployments", name, "promote",
                                   method="POST", body=payload)  # fmt: skip
            assert status == code, name
    finally:
        nbd.server.stop(repo)


async def test_try_it_and_extras_through_jupyter(jp_fetch: Fetch, tmp_path: Path) -> None:
    with serving_affine(tmp_path) as repo:
        start = json.loads(
            (
                await jp_fetch(
                    "nbdeploy",
                    "api",
                    "deployments",
                    "affine",
                    "try",
                    params={"repository": str(repo), "version": "1"},
                )
            ).body
        )
        assert start["inputs"][0]["name"] == "x"
        request = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                               "data": [1.0, 1.0, 1.0]}]}  # fmt: skip
        sent = json.dumps({"repository": str(repo), "version": 1, "body": request}).encode()
        answer = json.loads((await jp_fetch("nbdeploy", "api", "deployments", "affine", "try",
                                            method="POST", body=sent)).body)  # fmt: skip
        assert answer["outputs"][0]["first"] == [6.5, 8.0] and answer["ms"] > 0
        request["inputs"][0]["datatype"] = "INT32"
        sent = json.dumps({"repository": str(repo), "version": 1, "body": request}).encode()
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("nbdeploy", "api", "deployments", "affine", "try", method="POST",
                           body=sent)  # fmt: skip
        assert caught.value.code == 400 and caught.value.response is not None
        error = json.loads(caught.value.response.body)
        assert "not INT32" in error["message"] and "traceback" not in error
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch("nbdeploy", "api", "deployments", "affine", "versions", "1",
                           "report.html", params={"repository": str(repo)})  # fmt: skip
        assert caught.value.code == 404 and caught.value.response is not None
        assert "has no report.html (its extras: none)" in caught.value.response.body.decode()


@pytest.mark.parametrize(
    ("command", "expected"),
    [(["labextension", "list"], r"nbdeploy v[\d.]+ .*enabled.*OK"),
     (["server", "extension", "list"], r"nbdeploy\.lab .*OK")],
)  # fmt: skip
def test_installed_and_enabled_by_pip(command: list[str], expected: str) -> None:
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "jupyter", *command], capture_output=True,
                         text=True, check=True)  # fmt: skip
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(expected, plain), plain
