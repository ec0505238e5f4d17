"""The JupyterLab extension in a real JupyterLab (under a non-root base URL, as behind
JupyterHub or Binder) and Debian's chromium: .onnx files open in netron, nbd.show
renders inline through the server extension. The sidebar has tests of its own
(test_sidebar.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import nbdeploy as nbd
from tests.browser import browser_page
from tests.graph.helpers import model
from tests.lab import Lab, running_lab, write_notebook

pytestmark = pytest.mark.slow
BASE_URL = "/user/ada/"
GRAPH = """<ir_version: 8, opset_import: ["" : 17]>
    shown (float[N, 4] x) => (float[N, 4] y) {
        relu_first = Relu (x)
        sigmoid_second = Sigmoid (relu_first)
        y = Mul (relu_first, sigmoid_second)
    }"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    env = {"NBDEPLOY_REPOSITORY": str(root / "repository")}
    with running_lab(root, base_url=BASE_URL, env=env) as running:
        yield running
    nbd.server.stop(root / "repository")


@pytest.fixture
def page() -> Iterator[Any]:
    with browser_page() as opened:
        yield opened


def _graph_ops(frame: Any) -> str:
    frame.locator("svg#canvas g.node").first.wait_for(timeout=60_000)
    return str(frame.locator("svg#canvas").inner_html())


def test_onnx_files_open_in_netron(lab: Lab, page: Any) -> None:
    model(GRAPH).save(lab.root / "shown.onnx")
    lab.open(page, "shown.onnx")
    tab = page.locator(".jp-nbdeploy-OnnxViewer")
    tab.wait_for(timeout=60_000)
    svg = _graph_ops(page.frame_locator(".jp-nbdeploy-OnnxViewer iframe"))
    page.screenshot(path=str(lab.root / "onnx-file.png"))
    for op in ("Relu", "Sigmoid", "Mul"):
        assert op in svg
    src = page.locator(".jp-nbdeploy-OnnxViewer iframe").get_attribute("src")
    assert f"{BASE_URL}nbdeploy/netron/" in src  # through Jupyter, under its base URL


def test_nbd_show_renders_inline(lab: Lab, page: Any) -> None:
    model(GRAPH).save(lab.root / "inline.onnx")
    write_notebook(lab.root / "show.ipynb", [
        "import nbdeploy as nbd\nart = nbd.load('inline.onnx')\nnbd.show(art)",
    ])  # fmt: skip
    lab.open(page, "show.ipynb")
    _run_all_when_idle(lab, page)
    frame = page.frame_locator(".jp-nbdeploy-NetronOutput iframe")
    svg = _graph_ops(frame)
    page.screenshot(path=str(lab.root / "show-inline.png"))
    assert "Sigmoid" in svg
    src = page.locator(".jp-nbdeploy-NetronOutput iframe").get_attribute("src")
    assert f"{BASE_URL}nbdeploy/artifacts/" in src.replace("%2F", "/")


def _run_all_when_idle(lab: Lab, page: Any) -> None:
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel"
        "?.status === 'idle'", timeout=90_000,
    )  # fmt: skip
    lab.run(page, "notebook:run-all-cells")
