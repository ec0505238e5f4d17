"""Lazy imports of optional frameworks, with an install hint when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra.

    Args:
        module: Module to import, e.g. ``"skl2onnx"``.
        extra: The nbdeploy extra that installs it, e.g. ``"sklearn"``.
        feature: What the user was doing, for the message.
        package: The PyPI name when it differs from the module's.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(package or module.split(".")[0], extra, feature) from err
