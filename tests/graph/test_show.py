from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

import nbdeploy as nbd
from nbdeploy.graph import netron
from nbdeploy.graph.show import MIME_TYPE
from tests.browser import browser_page
from tests.graph.helpers import model

pytest.importorskip("netron")


@pytest.fixture(scope="module")
def art() -> nbd.Artifact:
    return model(
        """<ir_version: 8, opset_import: ["" : 17]>
        shown (float[N, 4] x) => (float[N, 4] y) {
            relu_first = Relu (x)
            sigmoid_second = Sigmoid (relu_first)
            y = Mul (relu_first, sigmoid_second)
        }"""
    )


def _get(url: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, b"", {}


def test_display_object_offers_the_lab_mime_type_an_iframe_and_a_drawing(art) -> None:
    view = nbd.show(art)
    bundle = view._repr_mimebundle_()
    assert bundle[MIME_TYPE]["model_id"] == view.model_id
    html = bundle["text/html"].replace("&amp;", "&")
    assert html.startswith("<svg") and f'src="{view.url}"' in html  # the drawing first
    assert bundle["image/svg+xml"].startswith("<svg") and "relu_first" in bundle["image/svg+xml"]


def test_server_serves_patched_netron_and_the_model_behind_a_token(art) -> None:
    view = nbd.show(art)
    server = netron.server()
    status, page, headers = _get(f"{server.base}/netron/index.html")
    assert status == 200
    assert b'<meta name="version" content="0.0.0">' in page and b'name="date"' not in page
    assert headers["Set-Cookie"].startswith("consent=")
    status, body, _ = _get(f"{server.base}/models/{view.model_id}/{art.name}.onnx")
    assert status == 200 and body == art.onnx.SerializeToString()
    assert _get(f"{server.base}/netron/index.html", "HEAD")[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/WRONGTOKEN/netron/index.html",
        "/{token}/netron/..%2F..%2F..%2Fetc%2Fpasswd",
        "/{token}/netron/../__init__.py",
        "/{token}/netron/%2Fetc%2Fpasswd",
        "/{token}/models/unknown/x.onnx",
        "/{token}/models/{id}/other-name.onnx",
    ],
)
def test_server_refuses_wrong_tokens_and_path_traversal(art, path: str) -> None:
    view = nbd.show(art)
    server = netron.server()
    url = f"http://127.0.0.1:{server.port}" + path.format(token=server.token, id=view.model_id)
    assert _get(url)[0] == 404


def test_netron_renders_the_graph_in_a_real_browser(art, tmp_path: Path) -> None:
    view = nbd.show(art)
    with browser_page() as page:
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(view.url)
        page.wait_for_selector("svg#canvas g.node", timeout=30_000)
        svg = page.inner_html("svg#canvas")
        page.screenshot(path=str(tmp_path / "netron.png"))
    for op in ("Relu", "Sigmoid", "Mul"):
        assert op in svg
    assert all(u.startswith(f"http://127.0.0.1:{netron.server().port}/") for u in requests), [
        u for u in requests if "127.0.0.1" not in u
    ]
    assert (tmp_path / "netron.png").stat().st_size > 5_000  # a drawn page, not a blank one
