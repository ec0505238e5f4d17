"""The parameters of a repository load, as either front end extracted them: Triton's
``config`` and ``file:`` overrides, and nbdeploy's ``traffic``, ``canary``, ``staged`` and
``version`` — checked here once, pure, for HTTP and gRPC alike."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError

__all__ = ["LoadRequest", "decode_load", "decode_shares", "version_number"]


@dataclass
class LoadRequest:
    """A decoded repository load: Triton's ``config`` and ``file:`` overrides, plus
    nbdeploy's ``traffic`` (shares by version), ``canary`` (percent), ``staged`` (a folder
    of the repository's staging area holding a new version) and ``version`` (its number)."""

    config_json: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    traffic: dict[int, float] | None = None
    canary: float | None = None
    staged: str | None = None
    version: int | None = None


def decode_load(params: Mapping[str, Any], files: dict[str, bytes]) -> LoadRequest:
    """Check a load's parameters, as either front end extracted them (all text from gRPC;
    traffic as JSON text or an object, canary and version as numbers or text from HTTP)."""
    config, staged, version = params.get("config"), params.get("staged"), params.get("version")
    if config is not None and not isinstance(config, str):
        raise ProtocolError("parameter 'config' must be a string")
    if files and config is None:
        raise ProtocolError("file overrides need a 'config' parameter too (as Triton requires)")
    if staged is not None and not isinstance(staged, str):
        raise ProtocolError("parameter 'staged' must be the name of a staged folder")
    if version is not None and staged is None:
        raise ProtocolError("parameter 'version' goes with 'staged' (the files of that version)")
    number = version_number(str(version)) if version is not None else None
    return LoadRequest(config, files, _shares(params.get("traffic")),
                       _percent(params.get("canary")), staged, number)  # fmt: skip


def _shares(value: Any) -> dict[int, float] | None:
    if value is None:
        return None
    try:
        shares = json.loads(value) if isinstance(value, str) else value
    except ValueError as err:
        raise ProtocolError("parameter 'traffic' must map versions to shares") from err
    return decode_shares(shares, "parameter 'traffic'")


def decode_shares(shares: Any, where: str = "'traffic'") -> dict[int, float]:
    """``{"1": 90, "2": 10}`` as ``{1: 90.0, 2: 10.0}``; versions are decimal numbers and
    shares finite, non-negative numbers."""
    if not isinstance(shares, dict):
        raise ProtocolError(f"{where} must map versions to shares, not {type(shares).__name__}")
    decoded = {}
    for key, share in shares.items():
        if not isinstance(share, int | float) or isinstance(share, bool):
            raise ProtocolError(f"{where}: the share of version {key!r} must be a number")
        if not math.isfinite(share) or share < 0:
            raise ProtocolError(
                f"{where}: the share of version {key!r} must be a finite number >= 0"
            )
        decoded[version_number(str(key))] = float(share)
    return decoded


def version_number(text: str) -> int:
    """A version given as text: ASCII digits only (``int()`` also takes '²' and '٣')."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ProtocolError(f"version {text!r} is not a version number (use digits, like '2')")
    return int(text)


def _percent(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        percent = float(value)
    except (TypeError, ValueError) as err:
        raise ProtocolError(f"parameter 'canary' must be a number, not {value!r}") from err
    if not math.isfinite(percent):
        raise ProtocolError(f"parameter 'canary' must be a finite number, not {value!r}")
    return percent
