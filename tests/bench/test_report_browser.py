"""The report's inline script in a real browser (Debian's chromium): a click on a header
sorts the rows, numbers by value with missing ones last; a second click reverses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.rows import comparison, timed
from tests.browser import browser_page

pytestmark = pytest.mark.slow


def test_headers_sort_the_rows_of_the_saved_report(tmp_path: Path) -> None:
    rows = [timed("fp32", 10.0, 0.5, size=864_000), timed("int8", 2.5, 0.1, size=221_000),
            timed("fp16", 9.0, 0.5, size=432_000, top1_agreement=None)]  # fmt: skip
    path = tmp_path / "report.html"
    comparison(*rows).to_html(path)
    with browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(path.as_uri())

        def order() -> list[str]:
            cells = page.locator("table.nbd-sort tbody tr td:first-child").all_inner_texts()
            return [c.removeprefix("★ ") for c in cells]

        assert order() == ["fp32", "int8", "fp16"]
        header = page.locator("table.nbd-sort thead th", has_text="p50")
        header.click()  # numerically: 2.5 < 9 < 10 (as text "10" would sort first)
        assert order() == ["int8", "fp16", "fp32"] and header.get_attribute("data-dir") == "asc"
        header.click()
        assert order() == ["fp32", "fp16", "int8"] and header.get_attribute("data-dir") == "desc"
        page.locator("table.nbd-sort thead th", has_text="agreement").click()
        assert order()[-1] == "fp16"  # no agreement: last
        page.locator("table.nbd-sort thead th", has_text="variant").click()
        assert order() == ["fp16", "fp32", "int8"]
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert errors == []
