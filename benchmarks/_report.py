"""Write a benchmark's rows as JSON and as a markdown table."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def write(name: str, title: str, rows: Sequence[dict[str, Any]], notes: str = "") -> Path:
    """Save ``rows`` to ``results/<name>.json`` and ``results/<name>.md``; return the .md."""
    RESULTS.mkdir(exist_ok=True)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine}
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2))
    header = list(rows[0]) if rows else []
    lines = [f"# {title}", "", f"{meta['when']} on {machine}.", "", notes, ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[k]) for k in header) + " |")
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
