"""What a served version says about itself: where it came from, read from the lineage
and parity nbdeploy writes into an ONNX file's metadata, and which extras its folder
holds beside the model (an example request, the comparison report that chose it)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .layout import EXTRAS, META_PREFIX

log = logging.getLogger(__name__)

__all__ = ["describe", "extras"]


def describe(metadata: Mapping[str, str]) -> dict[str, Any]:
    """``{"source", "steps", "parity"}`` from a model's metadata; empty strings and no
    steps for a model nbdeploy did not write (or whose metadata it cannot read)."""
    lineage_key, parity_key = META_PREFIX + "lineage", META_PREFIX + "parity"
    try:
        lineage = json.loads(metadata[lineage_key]) if lineage_key in metadata else {}
        parity = json.loads(metadata[parity_key]) if parity_key in metadata else None
        return {"source": _source(lineage), "steps": [_step(s) for s in lineage.get("steps", ())],
                "parity": _parity(parity)}  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("unreadable nbdeploy metadata in a served model: %s", err)
        return {"source": "", "steps": [], "parity": ""}


def extras(version_folder: Path) -> list[str]:
    """The extras (keys of ``layout.EXTRAS``) present in a version's folder."""
    return [key for key, file in EXTRAS.items() if (version_folder / file).is_file()]


def _source(lineage: Mapping[str, Any]) -> str:
    if not lineage:
        return ""
    return f"{lineage['model_class']} ({lineage['framework']} {lineage['framework_version']})"


def _step(step: Mapping[str, Any]) -> str:
    """``"export (dynamo)"``, ``"quantize int8-dynamic"``, ``"optimize (4 passes)"``."""
    kind, detail = str(step["kind"]), step.get("detail") or {}
    if "scheme" in detail:
        return f"{kind} {detail['scheme']}"
    if "exporter" in detail:
        return f"{kind} ({detail['exporter']})"
    if isinstance(detail.get("passes"), list):
        return f"{kind} ({len(detail['passes'])} passes)"
    return kind


def _parity(parity: Mapping[str, Any] | None) -> str:
    if not parity:
        return ""
    verdict = "ok" if parity["ok"] else "MISMATCH"
    return f"{verdict} vs {parity['reference']}: max abs {float(parity['max_abs']):.3g}"
