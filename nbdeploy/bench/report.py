"""A comparison written out: a text table, notebook HTML whose headers sort on click, a
self-contained HTML report to keep, and CSV with every column.

Each shows one table per batch size, the latency's 95 % interval, the chosen row marked
(★) with the reason, and one line per provider that could not run. The sorting script is
a few lines inline: JupyterLab runs it in trusted outputs; untrusted ones, nbviewer and
GitHub drop it and show the same table, unsorted.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import TYPE_CHECKING

from .. import _html
from .columns import Column, shown_columns
from .rows import COLUMNS, ComparisonRow

if TYPE_CHECKING:
    from .choice import Choice
    from .results import Comparison

__all__ = ["csv_text", "document", "html", "text"]

_STAR = "★ "
_CSS = (
    "<style>.nbd table.nbd-sort th{cursor:pointer;white-space:nowrap}"
    ".nbd table.nbd-sort th[data-dir=asc]::after{content:' ▲'}"
    ".nbd table.nbd-sort th[data-dir=desc]::after{content:' ▼'}"
    ".nbd tr.chosen td{background:var(--jp-brand-color3,#dbeafe)}"
    ".nbd .why{margin:2px 0 8px}.nbd .skip{color:var(--jp-ui-font-color2,#555)}</style>"
)
# Sort the tables of the block this script sits in by a clicked column: numbers by the
# cell's data-v, text by its data-s (the name without the ★); missing values last; a
# second click reverses.
SORT_SCRIPT = (
    "<script>(function(root){if(!root)return;"
    "root.querySelectorAll('table.nbd-sort').forEach(function(t){"
    "if(t.dataset.sortable)return;t.dataset.sortable='1';"
    "t.querySelectorAll('thead th').forEach(function(th,i){th.title='click to sort';"
    "th.addEventListener('click',function(){var up=th.dataset.dir!=='asc',b=t.tBodies[0];"
    "t.querySelectorAll('thead th').forEach(function(h){delete h.dataset.dir});"
    "th.dataset.dir=up?'asc':'desc';"
    "function key(r){var c=r.cells[i];if(!c)return null;var v=c.getAttribute('data-v');"
    "if(v===null)return c.getAttribute('data-s')||c.textContent;"
    "return v===''?null:parseFloat(v)}"
    "Array.from(b.rows).sort(function(x,y){var p=key(x),q=key(y);"
    "if(p===null||q===null)return p===q?0:(p===null?1:-1);"
    "var d=(typeof p==='number'&&typeof q==='number')?p-q:String(p).localeCompare(String(q));"
    "return up?d:-d}).forEach(function(r){b.appendChild(r)})})})})"
    "})(document.currentScript&&document.currentScript.parentElement)</script>"
)


def _groups(cmp: Comparison, choose: bool) -> list[tuple[int, list[ComparisonRow], Choice | None]]:
    """Measured rows by batch size, each with the row chosen at that batch size."""
    groups = []
    for batch in cmp.batch_sizes:
        rows = [r for r in cmp.measured if r.batch_size == batch]
        if rows:
            groups.append((batch, rows, cmp.choice(batch_size=batch) if choose else None))
    return groups


def text(cmp: Comparison, *, choose: bool = True) -> str:
    """The table as plain text: a block per batch size, the chosen row starred."""
    lines = []
    columns = shown_columns(cmp.metric, cmp.higher_is_better, cmp.measured)
    for batch, rows, chosen in _groups(cmp, choose):
        lines += [f"batch size {batch}", " | ".join(c.header for c in columns)]
        for row in rows:
            cells = [c.text(row) for c in columns]
            if chosen is not None and row is chosen.row:
                cells[0] = _STAR + cells[0]
            lines.append(" | ".join(cells))
        if chosen is not None:
            lines.append(f"chosen: {chosen.reason}")
    lines += [f"skipped on {provider}: {reason}" for provider, reason in cmp.skips()]
    return "\n".join(lines) + ("\n(partial: interrupted)" if cmp.partial else "")


def html(cmp: Comparison, *, title: str | None = None, choose: bool = True) -> str:
    """The notebook view: a titled card with one sortable table per batch size."""
    parts = []
    columns = shown_columns(cmp.metric, cmp.higher_is_better, cmp.measured)
    for batch, rows, chosen in _groups(cmp, choose):
        parts.append(f"<div><b>batch size {batch}</b></div>{_table(columns, rows, chosen)}")
        if chosen is not None:
            parts.append(f'<div class="why">{_STAR}chosen: {escape(chosen.reason)}</div>')
    for provider, reason in cmp.skips():
        parts.append(f'<div class="skip"><i>skipped on {escape(provider)}: '
                     f"{escape(reason)}</i></div>")  # fmt: skip
    note = " (partial: interrupted)" if cmp.partial else ""
    heading = title if title is not None else f"Comparison by {cmp.metric}{note}"
    return _CSS + _html.card(heading, "".join(parts) + SORT_SCRIPT)


def document(cmp: Comparison) -> str:
    """A self-contained HTML page: the tables, how to read them, the sorting script."""
    from .._version import __version__

    how = (
        "<p class='nbd skip'>Latency: median (p50) ± the larger half of its 95% confidence "
        "interval (hover for the bounds). Rows whose intervals overlap are tied on latency; "
        "a tie goes to the more accurate row, then the smaller file. Click a column's "
        f"header to sort. Written by nbdeploy {escape(__version__)}.</p>"
    )
    body = html(cmp)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>nbdeploy comparison by {escape(cmp.metric)}</title>"
        "<style>body{margin:24px;font:13px system-ui,sans-serif}</style></head>"
        f"<body>{body}{how}</body></html>\n"
    )


def csv_text(cmp: Comparison) -> str:
    """Every row (skipped ones too) with every column, interval bounds in their own
    columns, and which row was chosen at each batch size with the reason."""
    chosen = {id(c.row): c for b in cmp.batch_sizes if (c := cmp.choice(batch_size=b))}
    header = [*COLUMNS[:3], cmp.metric, *COLUMNS[3:], "skipped", "chosen", "reason"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in cmp.rows:
        choice = chosen.get(id(row))
        cells = [*row.cells(), row.skipped, choice is not None, choice.reason if choice else None]
        writer.writerow(["" if v is None else v for v in cells])
    return out.getvalue()


def _table(columns: list[Column], rows: list[ComparisonRow], chosen: Choice | None) -> str:
    best = _best(columns, rows)
    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value, shown = column.value(row), column.text(row)
            attrs = ""
            if isinstance(value, int | float):
                attrs += f' data-v="{float(value)!r}"'
                attrs += ' class="best"' if best.get(column.key) == value else ""
            elif value is None:
                attrs += ' data-v=""'
            else:
                attrs += f' data-s="{escape(str(value))}"'
            if hint := column.hint(row):
                attrs += f' title="{escape(hint)}"'
            is_chosen = chosen is not None and row is chosen.row
            if column.key == "variant" and is_chosen:
                shown = _STAR + shown
            cells.append(f"<td{attrs}>{escape(shown)}</td>")
        mark = ' class="chosen"' if chosen is not None and row is chosen.row else ""
        body.append(f"<tr{mark}>{''.join(cells)}</tr>")
    return (f'<table class="nbd-sort"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def _best(columns: list[Column], rows: list[ComparisonRow]) -> dict[str, float]:
    """The best value of each highlighted column among ``rows`` (none where all agree)."""
    best: dict[str, float] = {}
    for column in columns:
        values = [v for r in rows if isinstance(v := column.value(r), int | float)]
        if len(set(values)) > 1 and column.lower_is_better is not None:
            best[column.key] = min(values) if column.lower_is_better else max(values)
    return best
