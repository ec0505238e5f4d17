"""Debian's chromium driven by Playwright, for the tests that need a real browser.

Playwright's own browser download fails on our machines; Debian's package works. Tests
using :func:`browser_page` are skipped cleanly where chromium or playwright is absent.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextmanager
def browser_page(*flags: str, permissions: Sequence[str] = ()) -> Iterator[Any]:
    """A fresh headless chromium page (``flags``: extra command-line switches;
    ``permissions``: granted to every origin, e.g. ``"clipboard-read"``)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium") and not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*FLAGS, *flags])
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, permissions=list(permissions)
            )
            yield context.new_page()
        finally:
            browser.close()
