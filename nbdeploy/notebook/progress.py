"""Progress in a Jupyter kernel: one HTML line updated in place through a display
handle, and emptied at the end, so a saved notebook keeps no stale progress output."""

from __future__ import annotations

import threading
from html import escape
from typing import Any

__all__ = ["KernelDisplay", "in_kernel"]

_STYLE = "font-family:var(--jp-code-font-family,monospace);font-size:12px;opacity:.8"


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (not a terminal IPython)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class KernelDisplay:
    """Draws progress text into one output of the running cell."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        bundle = {"text/html": f'<div style="{_STYLE}">⏳ {escape(text)}</div>', "text/plain": text}
        with self._lock:
            if self._handle is None:
                from IPython.display import display

                self._handle = display(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)

    def clear(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.update({"text/plain": ""}, raw=True)
