"""``nbd.show``: the netron view of an artifact, inline in the notebook.

The display object carries three representations; each front end picks the richest it
understands: JupyterLab with nbdeploy's extension renders the custom MIME type through
Jupyter's own server (works on Binder); classic front ends get an iframe of the local
netron server; exported HTML and GitHub keep a static SVG drawing of the graph.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ..artifact import Artifact, require_onnx
from . import netron
from .draw import draw_svg

MIME_TYPE = "application/vnd.nbdeploy.netron+json"


class NetronView:
    """An artifact's graph in netron, displayable in Jupyter.

    Attributes:
        name: The artifact's name.
        url: The standalone viewer URL (local netron server, token included).
        model_id: The id under which the model bytes are registered.
        svg: The static drawing.
    """

    def __init__(self, art: Artifact, *, height: int = 600) -> None:
        model = require_onnx(art, "show").model
        self.name = art.name
        self.height = height
        data = model.SerializeToString()  # the graph; weights past 2 GiB stay outside
        server = netron.server()
        self.model_id = server.register(f"{art.name}.onnx", data)
        self.url = server.viewer_url(self.model_id)
        self.svg = draw_svg(model)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {
            MIME_TYPE: {"name": self.name, "model_id": self.model_id, "url": self.url,
                        "height": self.height},
            "text/html": self._repr_html_(),
            "image/svg+xml": self.svg,
            "text/plain": repr(self),
        }  # fmt: skip

    def _repr_html_(self) -> str:
        """The static drawing first (what a saved notebook shows on GitHub or nbviewer),
        netron's interactive view below it while the kernel that showed it runs."""
        return (
            f"{self.svg}<details><summary>interactive (netron, while this kernel runs)"
            f'</summary><iframe src="{escape(self.url)}" width="100%" height="{self.height}" '
            f'style="border:1px solid var(--jp-border-color2,#ddd)" '
            f'title="netron: {escape(self.name)}"></iframe></details>'
        )

    def __repr__(self) -> str:
        return f"<NetronView '{self.name}' at {self.url}>"


def show(art: Artifact, *, height: int = 600) -> NetronView:
    """Show an artifact's graph with netron, inline in the notebook.

    Args:
        art: An ONNX artifact.
        height: Height of the view in pixels.

    Returns:
        A display object; its ``url`` also opens in any browser on this machine.
    """
    return NetronView(art, height=height)
