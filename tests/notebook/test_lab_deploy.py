"""%deploy in a real JupyterLab, in Debian's chromium: the card appears in the notebook."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbdeploy as nbd
from tests.browser import browser_page
from tests.lab import running_lab, write_notebook

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("app", ["jupyterlab", "notebook"])
def test_deploy_card_copies_and_goes_live(tmp_path: Path, app: str) -> None:
    """In JupyterLab and in Notebook 7: the card, its copy button, and its live view
    with Try it, updated in place."""
    if app == "notebook":
        notebook = pytest.importorskip("notebook")
        if int(notebook.__version__.split(".")[0]) < 7:
            pytest.skip(f"Notebook {notebook.__version__} is not Notebook 7")
    repo = tmp_path / "repository"
    write_notebook(tmp_path / "deploy.ipynb", [
        "%load_ext nbdeploy",
        "import torch\ntorch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()\nx = torch.randn(2, 4)",
        "%deploy model --example x --name web",
    ])  # fmt: skip
    try:
        with (
            browser_page() as page,
            running_lab(tmp_path, env={"NBDEPLOY_REPOSITORY": str(repo)}, app=app) as lab,
        ):
            lab.open(page, "deploy.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel"
                "?.status === 'idle'", timeout=90_000,
            )  # fmt: skip
            lab.run(page, "notebook:run-all-cells")
            page.wait_for_selector("text=web v1 is live", timeout=180_000)
            card = page.inner_text(".jp-OutputArea-output:has-text('web v1 is live')")
            page.screenshot(path=str(tmp_path / f"deploy-card-{app}.png"), full_page=True)
            origin = lab.url.split("/", 3)[:3]
            page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                           origin="/".join(origin))  # fmt: skip
            copy = page.locator("button.nbd-copy").first
            copy.click()
            page.wait_for_selector("button.nbd-copy:has-text('Copied ✓')", timeout=10_000)
            copied = page.evaluate("() => navigator.clipboard.readText()")
            page.wait_for_selector("button.nbd-copy:has-text('Copy')", timeout=10_000)
            # the card's output is live: the model's versions, Try it, updated in place
            live = page.locator(".jp-nbdeploy-DeploymentOutput .jp-nbdeploy-Model")
            live.wait_for(timeout=30_000)
            marker = live.evaluate("node => { node.dataset.marked = 'yes'; return 1; }")
            live.locator("button[data-action='try']").first.click()
            dialog = page.locator(".jp-nbdeploy-TryIt")
            dialog.locator("button[data-action='send']").click()
            dialog.locator("tr[data-output]").first.wait_for(timeout=30_000)
            answered = dialog.inner_text()
            page.keyboard.press("Escape")
            page.wait_for_function(  # the poll brings the new request in, in place
                "() => [...document.querySelectorAll('.jp-nbdeploy-DeploymentOutput "
                ".jp-nbdeploy-Model[data-marked=yes]')].length === 1", timeout=30_000)  # fmt: skip
            note = page.inner_text(".jp-nbdeploy-DeploymentOutput-note")
            page.screenshot(path=str(tmp_path / f"live-card-{app}.png"), full_page=True)
        assert "one request" in card and "/v2/models/web/infer" in card
        assert "its answer to the example" in card
        assert marker == 1 and "v1 answered in" in answered and note.startswith("live ·")
        assert copied.startswith("import numpy as np") and "web_client.infer(" in copied
        assert nbd.deployments(repo)[0].name == "web"
    finally:
        nbd.server.stop(repo)
