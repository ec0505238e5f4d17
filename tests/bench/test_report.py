"""A comparison as text, notebook HTML, a standalone report and CSV: units, intervals,
one table per batch size, the chosen row marked with its reason, skips listed once."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from nbdeploy.bench.report import SORT_SCRIPT
from nbdeploy.bench.results import Comparison
from tests.bench.rows import comparison, skipped, timed


def sweep() -> Comparison:
    """fp32 and int8 at batch sizes 1 and 8; cuda skipped for each."""
    rows = [timed("fp32", 3.1, 0.2, accuracy=97.4, size=864_000),
            timed("fp32", 9.0, 0.3, accuracy=97.4, size=864_000, batch=8),
            timed("int8", 1.9, 0.1, accuracy=97.1, size=221_000),
            timed("int8", 8.9, 0.3, accuracy=97.1, size=221_000, batch=8)]  # fmt: skip
    skips = [skipped(v, "cuda", b) for v in ("fp32", "int8") for b in (1, 8)]
    return comparison(*rows, *skips)


def test_text_groups_by_batch_size_and_marks_the_choice() -> None:
    lines = str(sweep()).splitlines()
    assert lines[0] == "batch size 1" and lines[5] == "batch size 8"
    # no note column: no row has a note
    assert lines[1].split(" | ") == [
        "variant", "provider", "accuracy", "top-1 agreement", "max abs diff", "p50 ± 95% CI",
        "p95", "p99", "throughput", "size", "memory",
    ]  # fmt: skip
    assert lines[2].startswith("fp32 | cpu | 97.4% | 100% | 0 | 3.10 ms ±0.20 | 3.72 ms |")
    assert lines[3].startswith("★ int8 | cpu | 97.1% | ") and lines[3].endswith(
        "| 526/s | 221 kB | 12.5 MB"
    )
    assert lines[4] == ("chosen: int8: fastest beyond the noise (1.90 ms ±0.10 vs fp32 3.10 ms "
                        "±0.20) at accuracy 97.1%, within 0.5 pt of fp32's 97.4%")  # fmt: skip
    assert lines[7].startswith("★ fp32 | cpu") and lines[9].startswith("chosen: fp32: tie on")
    assert lines[10:] == ["skipped on cuda: cuda is not in this onnxruntime build"]
    assert "e+" not in str(sweep())  # no 1.339e+04


def test_notebook_html_sorts_in_trusted_outputs_and_reads_as_a_table_without_script() -> None:
    html = sweep()._repr_html_()
    assert html.count('<table class="nbd-sort">') == 2 and html.count(SORT_SCRIPT) == 1
    assert "<b>batch size 1</b>" in html and "<b>batch size 8</b>" in html
    assert html.count('<tr class="chosen">') == 2 and html.count("★ chosen: ") == 2
    assert html.count("skipped on cuda") == 1  # once per provider, not per variant
    assert '<td data-v="1.9" class="best" title="95% CI 1.80–2.00 ms">1.90 ms ±0.10</td>' in html
    untrusted = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    assert "<thead><tr><th>variant</th>" in untrusted and "<script" not in untrusted


def test_the_report_is_a_self_contained_page_written_where_asked(tmp_path: Path) -> None:
    cmp = sweep()
    page = cmp.to_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script src" not in page and "<link" not in page  # nothing to fetch
    assert "★ chosen: int8: fastest beyond the noise" in page and "Click a column" in page
    assert cmp.to_html() == page  # the same comparison, the same page


def test_csv_has_every_row_and_column_with_the_interval_bounds(tmp_path: Path) -> None:
    cmp = sweep()
    text = cmp.to_csv(tmp_path / "report.csv")
    assert (tmp_path / "report.csv").read_text(encoding="utf-8") == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 8 and list(rows[0]) == [*cmp.columns(), "skipped", "chosen", "reason"]
    int8 = rows[2]
    assert (int8["variant"], int8["batch_size"], int8["accuracy"]) == ("int8", "1", "97.1")
    assert float(int8["p50_low_ms"]) < float(int8["p50_ms"]) < float(int8["p50_high_ms"])
    assert int8["chosen"] == "True" and int8["reason"].startswith("int8: fastest")
    assert [r["chosen"] for r in rows].count("True") == 2  # one per batch size
    assert rows[4]["skipped"] == "cuda is not in this onnxruntime build" and rows[4]["p50_ms"] == ""


def test_the_live_table_of_the_studio_shows_skips_once_and_chooses_nothing() -> None:
    from nbdeploy.bench import report

    live = comparison(timed("fp32", 3.0, 0.1), skipped("fp32"), skipped("int8"))
    html = report.html(live, title="comparing… 3 of 6 rows", choose=False)
    assert html.count("skipped on cuda") == 1 and "★" not in html
    assert "<b>comparing… 3 of 6 rows</b>" in html
