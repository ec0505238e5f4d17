"""A static drawing of a graph as SVG: for exported HTML, GitHub, and any front end that
cannot run netron. Layers by longest path from the inputs; fine up to a few hundred nodes."""

from __future__ import annotations

from html import escape

import onnx

BOX_W, BOX_H, GAP_X, GAP_Y = 120, 26, 16, 22
MAX_NODES = 400


def draw_svg(model: onnx.ModelProto, *, max_nodes: int = MAX_NODES) -> str:
    """An SVG of the main graph's nodes (op type as label, node name as tooltip)."""
    nodes = list(model.graph.node)[:max_nodes]
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    depth: list[int] = []
    for node in nodes:  # ONNX graphs are topologically sorted
        parents = [producer[x] for x in node.input if x in producer]
        depth.append(1 + max((depth[p] for p in parents), default=-1))
    columns: dict[int, int] = {}
    position = []
    for d in depth:
        position.append((columns.get(d, 0), d))
        columns[d] = columns.get(d, 0) + 1
    width = max(columns.values(), default=1) * (BOX_W + GAP_X) + GAP_X
    height = (max(depth, default=0) + 1) * (BOX_H + GAP_Y) + GAP_Y

    def centre(i: int) -> tuple[float, float]:
        col, row = position[i]
        return GAP_X + col * (BOX_W + GAP_X) + BOX_W / 2, GAP_Y + row * (BOX_H + GAP_Y)

    edges = []
    for i, node in enumerate(nodes):
        for name in node.input:
            if name in producer:
                (x1, y1), (x2, y2) = centre(producer[name]), centre(i)
                edges.append(
                    f'<line x1="{x1:.0f}" y1="{y1 + BOX_H:.0f}" x2="{x2:.0f}" y2="{y2:.0f}"/>'
                )
    boxes = []
    for i, node in enumerate(nodes):
        x, y = centre(i)
        boxes.append(
            f"<g><title>{escape(_label(node))}</title>"
            f'<rect x="{x - BOX_W / 2:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="4"/>'
            f'<text x="{x:.0f}" y="{y + BOX_H / 2 + 4:.0f}">{escape(node.op_type[:18])}</text></g>'
        )
    more = len(model.graph.node) - len(nodes)
    note = (
        f'<text x="4" y="{height - 4}" class="more">+{more} more nodes</text>' if more > 0 else ""
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        "<style>line{stroke:#888;stroke-width:1}rect{fill:#e8eef8;stroke:#5470a0}"
        "text{text-anchor:middle;fill:#1a2a40}.more{text-anchor:start}</style>"
        + "".join(edges)
        + "".join(boxes)
        + note
        + "</svg>"
    )


def _label(node: onnx.NodeProto) -> str:
    """What a tooltip names a node by: its name, else its first output."""
    return node.name or (node.output[0] if node.output else node.op_type)
