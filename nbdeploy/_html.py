"""Tiny HTML helpers for notebook reprs; colours come from JupyterLab's theme variables
so the same markup reads well in light and dark themes (and has fallbacks elsewhere)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

STYLE = (
    "<style>.nbd{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;"
    "color:var(--jp-ui-font-color1,inherit)}"
    ".nbd table{border-collapse:collapse;margin:2px 0}"
    # JupyterLab right-aligns cells of rendered HTML tables; ours read left to right.
    "div.nbd table th,div.nbd table td{padding:2px 8px;text-align:left!important;"
    "border-bottom:1px solid var(--jp-border-color2,#ddd);vertical-align:top}"
    ".nbd th{color:var(--jp-ui-font-color2,#555);font-weight:600}"
    ".nbd .ok{color:var(--jp-success-color1,#2e7d32)}"
    ".nbd .bad{color:var(--jp-error-color1,#c62828)}"
    ".nbd .best{font-weight:700;background:var(--jp-layout-color2,#eef)}"
    ".nbd code{font-family:var(--jp-code-font-family,monospace)}</style>"
)


# Inline too: where the <style> above is stripped (a saved notebook opened untrusted,
# GitHub), JupyterLab would right-align the cells.
LEFT = ' style="text-align:left"'


def card(title: str, body: str) -> str:
    """A titled block."""
    return f'{STYLE}<div class="nbd"><b>{escape(title)}</b>{body}</div>'


def fields(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column key/value table; values are escaped unless wrapped in :class:`Raw`."""
    body = "".join(f"<tr><th{LEFT}>{escape(k)}</th><td{LEFT}>{cell(v)}</td></tr>"
                   for k, v in rows)  # fmt: skip
    return f"<table>{body}</table>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table with a header row."""
    head = "".join(f"<th{LEFT}>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{LEFT}>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


class Raw(str):
    """Markup that is already safe and must not be escaped."""


def cell(value: Any) -> str:
    """One cell's markup."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    return escape(str(value))


def verdict(ok: bool, text: str) -> Raw:
    """Text coloured as success or failure."""
    return Raw(f'<span class="{"ok" if ok else "bad"}">{escape(text)}</span>')


def human_bytes(size: float) -> str:
    """1536 -> '1.5 kB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def code_lines(items: Iterable[Any]) -> Raw:
    """Items in code font, one per line."""
    return Raw("<br>".join(f"<code>{cell(item)}</code>" for item in items))
