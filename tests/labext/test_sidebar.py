"""The Deployments sidebar in a real JupyterLab and Debian's chromium, against a real
local server started with another repository than the Jupyter server's default: the
live view updates in place, actions ask first and can be undone, Try it answers, copy
buttons copy. Screenshots (light and dark) land in the lab's root folder."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy.lab import deployments
from nbdeploy.server.client import LocalServer
from tests.browser import browser_page
from tests.graph.helpers import model
from tests.lab import Lab, running_lab, write_notebook
from tests.servers import affine, expected

pytestmark = pytest.mark.slow
X = np.arange(6, dtype=np.float32).reshape(2, 3)
ONE_ROW = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
PANEL = ".jp-nbdeploy-Deployments"
WAIT = 60_000  # ms: how long a page may take to show what a test waits for
# The mean colour of a picture: image-shaped (NCHW, 3 channels, 8x8).
IMAGE = """<ir_version: 8, opset_import: ["" : 18]>
    picture (float[N, 3, 8, 8] x) => (float[N, 3] y) {
        axes = Constant <value = int64[2] {2, 3}> ()
        y = ReduceMean <keepdims = 0> (x, axes)
    }"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A server on a repository that is not the default: v1 of ``affine`` (with its
    example) at 75%, v2 at 25%, ``single`` with one version and ``picture``
    (image-shaped); and the environment of a Jupyter whose default repository is empty.
    A private registry keeps other servers of this user out of the screenshots."""
    root = tmp_path_factory.mktemp("sidebar")
    repository = root / "elsewhere"
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(runtime))
        nbd.server.start(repository, http_port=0, grpc_port=0)
        try:
            served = nbd.export(affine().onnx, example={"x": X}, name="affine")
            nbd.serve(served, name="affine", repository=repository)
            nbd.serve(affine(1), name="affine", canary=25, repository=repository)
            nbd.serve(affine(), name="single", repository=repository)
            nbd.serve(model(IMAGE), name="picture", repository=repository)
            env = {"NBDEPLOY_REPOSITORY": str(root / "default"), "XDG_RUNTIME_DIR": str(runtime)}
            yield nbd.server.status(repository).repository, env
        finally:
            nbd.server.stop(repository)


@pytest.fixture(scope="module")
def lab(served: tuple[Path, dict[str, str]]) -> Iterator[tuple[Lab, Path]]:
    repository, env = served
    with running_lab(repository.parent, env=env) as running:
        yield running, repository


@pytest.fixture
def page(lab: tuple[Lab, Path]) -> Iterator[Any]:
    with browser_page(permissions=["clipboard-read", "clipboard-write"]) as opened:
        running, _ = lab
        running.open(opened, "")
        running.run(opened, "nbdeploy:open-deployments")
        opened.locator(PANEL).wait_for(timeout=WAIT)
        yield opened


def _model(page: Any, repository: Path, name: str) -> Any:
    block = page.locator(f"{PANEL} section[data-repository='{repository}'] "
                         f"section[data-model='{name}']")  # fmt: skip
    block.wait_for(timeout=WAIT)
    return block


def _server(repository: Path) -> LocalServer:
    return nbd.server.status(repository).connect()


def _split(repository: Path, name: str) -> dict[int, float]:
    with _server(repository) as server:
        (found,) = [m for m in server.overview() if m.name == name]
    return found.traffic


def _theme(page: Any, theme: str) -> None:
    page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', "
                  f"{{theme: {theme!r}}})")  # fmt: skip
    light = "true" if theme == "JupyterLab Light" else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'",
                           timeout=WAIT)  # fmt: skip
    # the splash JupyterLab shows while a theme loads is gone
    page.wait_for_function("() => !document.querySelector('#jupyterlab-splash')", timeout=WAIT)


def test_the_live_view_updates_in_place(lab: tuple[Lab, Path], page: Any) -> None:
    running, repository = lab
    assert page.locator(f"{PANEL} .jp-nbdeploy-Deployments-title").text_content() == "Deployments"
    block = _model(page, repository, "affine")
    server_head = page.locator(f"{PANEL} section[data-repository='{repository}']").first
    assert str(repository.name) in server_head.inner_text()  # labelled by its repository
    card = block.locator(".jp-nbdeploy-Version[data-version='1']")
    assert "75%" in card.inner_text() and "stable" in card.inner_text()
    assert "canary" in block.locator(".jp-nbdeploy-Version[data-version='2']").inner_text()
    # Marks that a rebuilt panel would lose: a node's property, an open <details>.
    card.evaluate("node => { node.kept = true; }")
    block.locator(".jp-nbdeploy-History summary").click()
    before = int(card.locator(".jp-nbdeploy-Spark").get_attribute("data-requests"))
    with _server(repository) as server:
        for _ in range(25):
            server.infer_json("affine", ONE_ROW, version=1)
    page.wait_for_function(
        "n => Number(document.querySelector(\"section[data-model='affine'] "
        ".jp-nbdeploy-Version[data-version='1'] .jp-nbdeploy-Spark\").dataset.requests) >= n",
        arg=before + 25, timeout=WAIT,
    )  # fmt: skip
    assert card.evaluate("node => node.kept === true"), "the card was rebuilt, not updated"
    assert block.locator(".jp-nbdeploy-History").evaluate("node => node.open")
    bars = card.locator(".jp-nbdeploy-Spark-ok")
    assert max(float(bars.nth(i).get_attribute("height") or 0) for i in range(30)) > 0
    history = block.locator(".jp-nbdeploy-History-entry[data-version='2']").inner_text()
    assert "onnx.ModelProto" in history and "export (passthrough)" in history
    panel = page.locator(PANEL)
    out = running.root / "screenshots"
    out.mkdir(exist_ok=True)
    panel.screenshot(path=str(out / "sidebar-light.png"))
    page.screenshot(path=str(out / "lab-light.png"))
    # The panel fits its default width: nothing scrolls sideways.
    wide = panel.evaluate("""node => [...node.querySelectorAll('*')]
        .filter(e => e.getBoundingClientRect().right > node.getBoundingClientRect().right + 1)
        .map(e => e.className.baseVal ?? e.className)""")
    assert wide == [] and panel.evaluate("node => node.scrollWidth <= node.clientWidth")
    _theme(page, "JupyterLab Dark")
    try:
        panel.screenshot(path=str(out / "sidebar-dark.png"))
        page.screenshot(path=str(out / "lab-dark.png"))
    finally:
        _theme(page, "JupyterLab Light")


def test_promote_with_one_version_is_disabled_with_a_reason(
    lab: tuple[Lab, Path], page: Any
) -> None:
    _, repository = lab
    promote = _model(page, repository, "single").locator("button[data-action='promote']")
    assert promote.is_disabled()
    assert "one version loaded (v1)" in (promote.get_attribute("title") or "")


def test_unload_asks_first_and_undo_restores_the_split(lab: tuple[Lab, Path], page: Any) -> None:
    running, repository = lab
    block = _model(page, repository, "affine")
    block.locator("button[data-action='unload']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=WAIT)
    text = dialog.inner_text()
    assert "Unload affine?" in text and str(repository.name) in text
    assert "v1 75% → unloaded (its files stay)" in text and "v2 25% → unloaded" in text
    page.screenshot(path=str(running.root / "screenshots" / "unload-confirm.png"))
    dialog.locator("button", has_text="Cancel").click()
    dialog.wait_for(state="detached", timeout=WAIT)
    assert _split(repository, "affine") == {1: 75.0, 2: 25.0}  # nothing happened
    block.locator("button[data-action='unload']").click()
    page.locator(".jp-Dialog button", has_text="Unload").click()
    undo = block.locator(".jp-nbdeploy-Undo button[data-action='undo']")
    undo.wait_for(timeout=WAIT)
    assert _split(repository, "affine") == {}
    assert "Unloaded affine: v1 75% · v2 25% → nothing served" in block.inner_text()
    undo.click()
    block.locator(".jp-nbdeploy-Undo", has_text="Undone").wait_for(timeout=WAIT)
    assert _split(repository, "affine") == {1: 75.0, 2: 25.0}
    block.locator(".jp-nbdeploy-Version[data-version='2']").wait_for(timeout=WAIT)


def test_try_it_shows_the_response_and_the_servers_message(
    lab: tuple[Lab, Path], page: Any
) -> None:
    running, repository = lab
    block = _model(page, repository, "affine")
    block.locator(".jp-nbdeploy-Version[data-version='1'] button[data-action='try']").click()
    editor = page.locator(".jp-nbdeploy-TryIt-editor")
    editor.wait_for(timeout=WAIT)
    assert json.loads(editor.input_value())["inputs"][0]["data"] == X.ravel().tolist()
    dialog = page.locator(".jp-nbdeploy-TryIt")
    dialog.locator("button[data-action='send']").click()
    row = dialog.locator(".jp-nbdeploy-TryIt-outputs tr[data-output='y']")
    row.wait_for(timeout=WAIT)
    assert row.inner_text().split("\t")[:3] == ["y", "FP32", "[2, 2]"]
    first = [float(v) for v in row.inner_text().split("\t")[3].split(", ")]
    np.testing.assert_allclose(first, expected(X).ravel())
    assert "v1 answered in" in dialog.inner_text()
    page.screenshot(path=str(running.root / "screenshots" / "try-it.png"))
    editor.fill('{"inputs": [')
    dialog.locator("button[data-action='send']").click()
    dialog.locator(".jp-nbdeploy-TryIt-error", has_text="not valid JSON").wait_for(timeout=WAIT)
    wrong = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}
    editor.fill(json.dumps(wrong))
    dialog.locator("button[data-action='send']").click()
    error = dialog.locator(".jp-nbdeploy-TryIt-error", has_text="The server refused")
    error.wait_for(timeout=WAIT)
    assert "Traceback" not in error.inner_text() and "x" in error.inner_text()
    page.keyboard.press("Escape")


def test_try_it_sends_a_picture_resized_to_the_input(
    lab: tuple[Lab, Path], page: Any, tmp_path: Path
) -> None:
    from PIL import Image

    _, repository = lab
    picture = tmp_path / "red.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 20), (255, 0, 0)).save(buffer, format="PNG")
    picture.write_bytes(buffer.getvalue())
    block = _model(page, repository, "picture")
    block.locator("button[data-action='try']").click()
    dialog = page.locator(".jp-nbdeploy-TryIt")
    upload = dialog.locator("input[type='file'][data-input='x']")
    upload.wait_for(timeout=WAIT)
    assert "resized in the browser to 8×8" in dialog.inner_text()
    assert "floats in [0, 1]" in dialog.inner_text()
    upload.set_input_files(str(picture))
    dialog.locator(".jp-nbdeploy-TryIt-note", has_text="red.png").wait_for(timeout=WAIT)
    dialog.locator("button[data-action='send']").click()
    row = dialog.locator(".jp-nbdeploy-TryIt-outputs tr[data-output='y']")
    row.wait_for(timeout=WAIT)
    assert row.inner_text().split("\t")[2:] == ["[1, 3]", "1, 0, 0"]  # red, as RGB means
    page.keyboard.press("Escape")


def test_copy_buttons_say_copied_and_copy_a_working_call(lab: tuple[Lab, Path], page: Any) -> None:
    _, repository = lab
    block = _model(page, repository, "affine")
    copy = block.locator(".jp-nbdeploy-Version[data-version='1'] button[data-action='copy-python']")
    copy.click()
    page.wait_for_function("node => node.textContent === 'Copied ✓'", arg=copy.element_handle(),
                           timeout=WAIT)  # fmt: skip
    page.wait_for_function("node => node.textContent === 'Python'", arg=copy.element_handle(),
                           timeout=WAIT)  # fmt: skip
    copied = page.evaluate("navigator.clipboard.readText()")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(repository.parent / "runtime"))
        (server,) = [s for s in deployments.overview()["servers"]
                     if s["repository"] == str(repository)]  # fmt: skip
    (affine_doc,) = [m for m in server["models"] if m["name"] == "affine"]
    assert copied == affine_doc["versions"][0]["snippets"]["python"]
    assert 'affine_client.infer("affine"' in copied


def test_notebook_7_shows_the_panel_too(served: tuple[Path, dict[str, str]]) -> None:
    notebook = pytest.importorskip("notebook")
    if int(notebook.__version__.split(".")[0]) < 7:
        pytest.skip(f"Notebook {notebook.__version__} is not Notebook 7")
    repository, env = served
    root = repository.parent / "notebook7"
    root.mkdir()
    write_notebook(root / "page.ipynb", ["1 + 1"])
    with running_lab(root, env=env, app="notebook") as running, browser_page() as page:
        for path in ("", "page.ipynb"):  # the file browser's page and a notebook's
            running.open(page, path)
            running.run(page, "nbdeploy:open-deployments")
            block = _model(page, repository, "affine")
            assert "75%" in block.inner_text()
        page.screenshot(path=str(repository.parent / "screenshots" / "notebook7.png"))
