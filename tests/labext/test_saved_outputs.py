"""A saved notebook opened before any cell runs, in a real JupyterLab and chromium:
outputs of kernels long gone read well (the static picture, not netron's 404 dialog)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbdeploy.graph.draw import draw_svg
from nbdeploy.graph.show import MIME_TYPE
from tests.browser import browser_page
from tests.graph.helpers import model
from tests.lab import Lab, running_lab

pytestmark = pytest.mark.slow
GRAPH = """<ir_version: 8, opset_import: ["" : 17]>
    saved (float[N, 4] x) => (float[N, 4] y) {
        first_relu = Relu (x)
        y = Sigmoid (first_relu)
    }"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("saved")) as running:
        yield running


def _saved_show_output(path: Path) -> None:
    """A notebook as `nbd.show` left it, from a kernel whose model is no longer served."""
    svg = draw_svg(model(GRAPH).payload.model)
    shown = {"name": "saved", "model_id": "0123456789abcdef", "url": "", "height": 400}
    bundle = {MIME_TYPE: shown, "image/svg+xml": svg, "text/plain": "<NetronView 'saved'>"}
    cell = nbformat.v4.new_code_cell("nbd.show(art)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)


def test_a_saved_netron_output_shows_its_static_drawing(lab: Lab, tmp_path: Path) -> None:
    _saved_show_output(lab.root / "saved.ipynb")
    page: Any
    with browser_page() as page:
        lab.open(page, "saved.ipynb")
        note = page.wait_for_selector("text=static drawing (run the cell again", timeout=60_000)
        image = page.locator(".jp-nbdeploy-NetronOutput img")
        assert image.get_attribute("alt") == "graph of saved"
        assert page.locator(".jp-nbdeploy-NetronOutput iframe").count() == 0  # no 404 dialog
        page.screenshot(path=str(tmp_path / "saved-show.png"))
    assert note is not None
