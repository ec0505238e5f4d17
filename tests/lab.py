"""A real JupyterLab for browser tests: started on a free loopback port with a token
(and a base URL when asked), its app exposed to the page so tests can run commands.

It runs the nbdeploy these tests import (a git worktree's too, not the one pip installed):
that folder goes first on the lab's and its kernels' ``PYTHONPATH``, and the lab
extension built beside it (``nbdeploy/labextension``, by ``npm run build``) is served
instead of the copy ``pip install`` left under ``share/jupyter/labextensions``."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

import nbdeploy

PACKAGE = Path(nbdeploy.__file__).resolve().parent


@dataclass(frozen=True)
class Lab:
    url: str  # http://127.0.0.1:<port><base_url>
    token: str
    root: Path
    app: str = "jupyterlab"  # or "notebook": Notebook 7

    def open(self, page: Any, path: str) -> None:
        """Open a document in the page and wait until the app has settled."""
        if self.app == "notebook":
            where = f"notebooks/{path}" if path.endswith(".ipynb") else f"tree/{path}"
        else:
            where = f"lab/tree/{path}" if path else "lab"
        page.goto(f"{self.url}{where}?token={self.token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
        page.evaluate("async () => { await window.jupyterapp.restored; }")  # layout settled

    def run(self, page: Any, command: str) -> None:
        """Execute a JupyterLab command once the plugin that adds it has activated."""
        page.wait_for_function(f"() => window.jupyterapp.commands.hasCommand({command!r})",
                               timeout=60_000)  # fmt: skip
        page.evaluate(f"window.jupyterapp.commands.execute({command!r})")


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells."""
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(book, path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_lab(
    root: Path,
    *,
    base_url: str = "/",
    env: dict[str, str] | None = None,
    app: str = "jupyterlab",
) -> Iterator[Lab]:
    """``jupyter lab`` (or Notebook 7's ``jupyter notebook``: ``app="notebook"``) serving
    ``root``; stopped (with its kernels) at exit."""
    port, token = _free_port(), secrets.token_hex(16)
    expose = {"jupyterlab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
    command = [
        sys.executable, "-m", app, "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", f"--ServerApp.base_url={base_url}",
        f"--{expose}.expose_app_in_browser=True",
        *(["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
    ]  # fmt: skip
    log = (root / "jupyterlab.log").open("wb")
    data = tempfile.TemporaryDirectory(prefix="nbdeploy-lab-data-")
    env = {**os.environ, **_this_nbdeploy(Path(data.name)), **(env or {})}
    lab = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}{base_url}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if lab.poll() is not None:
                raise RuntimeError((root / "jupyterlab.log").read_text()[-3000:])
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2)
                break
            time.sleep(0.25)
        yield Lab(url, token, root, app)
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait()
        log.close()
        data.cleanup()


def _this_nbdeploy(data: Path) -> dict[str, str]:
    """Environment that makes the lab run this nbdeploy and serve its lab extension."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE.parent),
                                                       os.environ.get("PYTHONPATH")]))}  # fmt: skip
    built = PACKAGE / "labextension"
    if (built / "package.json").is_file():  # else pip's copy is all there is
        (data / "labextensions").mkdir()
        (data / "labextensions" / "nbdeploy").symlink_to(built, target_is_directory=True)
        paths = [str(data), os.environ.get("JUPYTER_PATH")]
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, paths))
    return env
