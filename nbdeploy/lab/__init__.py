"""JupyterLab's side of nbdeploy: a Jupyter server extension (netron, model bytes, the
deployments API under ``<base_url>/nbdeploy/``) and the prebuilt front-end extension in
``labextension/``. Everything goes through Jupyter's own server, authentication and base
URL, so it works behind JupyterHub and Binder proxies."""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_labextension_paths", "_jupyter_server_extension_points"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "nbdeploy"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbdeploy.lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import setup_handlers

    setup_handlers(serverapp)
    serverapp.log.info("nbdeploy server extension loaded at %snbdeploy/", serverapp.base_url)
