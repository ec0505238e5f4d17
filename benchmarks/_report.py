"""Write a benchmark's rows as JSON and as a markdown table."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def write(
    name: str,
    title: str,
    rows: Sequence[dict[str, Any]],
    notes: str = "",
    sections: Sequence[tuple[str, str, Sequence[dict[str, Any]]]] = (),
) -> Path:
    """Save ``rows`` to ``results/<name>.json`` and ``results/<name>.md``; return the .md.
    ``sections`` adds (title, notes, rows) tables after the first."""
    RESULTS.mkdir(exist_ok=True)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine}
    doc: dict[str, Any] = {"meta": meta, "rows": list(rows)}
    if sections:
        doc["sections"] = [{"title": t, "rows": list(r)} for t, _, r in sections]
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2))
    lines = [f"# {title}", "", f"{meta['when']} on {machine}.", "", notes, "", *_table(rows)]
    for section_title, section_notes, section_rows in sections:
        lines += ["", f"## {section_title}", "", section_notes, "", *_table(section_rows)]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _table(rows: Sequence[dict[str, Any]]) -> list[str]:
    header = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(row[k]) for k in header) + " |" for row in rows]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
