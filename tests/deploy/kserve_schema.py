"""The structure of KServe's InferenceService, read from the models of the kserve SDK
(generated from the CRD's OpenAPI schema) without importing it: the wheel is downloaded
once from PyPI into the cache and its model files parsed with ``ast``. 0.20 is the first
SDK whose models carry the Standard-mode canary (``V1beta1CanarySpec``, ``spec.canary``,
``predictor.name``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

VERSION = "0.20.0"


@cache
def _models() -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """SDK class name -> (openapi_types, attribute_map)."""
    folder = Path(os.environ.get("NBDEPLOY_CACHE", "~/.cache/nbdeploy")).expanduser() / "kserve"
    if not any(folder.glob(f"kserve-{VERSION}-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        f"kserve=={VERSION}", "-d", str(folder)], check=True,
                       capture_output=True)  # fmt: skip
    models = {}
    with zipfile.ZipFile(next(folder.glob(f"kserve-{VERSION}-*.whl"))) as wheel:
        for member in wheel.namelist():
            if member.startswith("kserve/models/v1beta1_") and member.endswith(".py"):
                models.update(_parse(wheel.read(member).decode()))
    return models


def _parse(source: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            tables = {}
            for item in node.body:
                target = item.targets[0] if isinstance(item, ast.Assign) else None
                if isinstance(target, ast.Name) and target.id in ("openapi_types", "attribute_map"):
                    tables[target.id] = ast.literal_eval(item.value)  # type: ignore[union-attr]
            if len(tables) == 2:
                found[node.name] = (tables["openapi_types"], tables["attribute_map"])
    return found


def problems(
    doc: dict[str, Any], model: str = "V1beta1InferenceService", at: str = ""
) -> list[str]:
    """Keys the CRD does not have, or values of the wrong kind, by path."""
    types, names = _models()[model]
    by_json = {json_name: attr for attr, json_name in names.items()}
    found = []
    for key, value in doc.items():
        if key not in by_json:
            found.append(f"{at}{key}: not a field of {model}")
            continue
        kind = types[by_json[key]]
        item = kind.removeprefix("list[").removesuffix("]")
        if kind in _models() and isinstance(value, dict):
            found += problems(value, kind, f"{at}{key}.")
        elif kind.startswith("list[") and not isinstance(value, list):
            found.append(f"{at}{key}: {value!r} is not a list")
        elif kind.startswith("list[") and item in _models():
            for index, element in enumerate(value):
                found += problems(element, item, f"{at}{key}[{index}].")
        elif kind == "int" and not isinstance(value, int):
            found.append(f"{at}{key}: {value!r} is not an int")
        elif kind == "str" and not isinstance(value, str):
            found.append(f"{at}{key}: {value!r} is not a string")
    return found
