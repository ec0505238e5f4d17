"""Warnings that point at the user's line, not at nbdeploy's internals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import FrameType

_PACKAGE = str(Path(__file__).parent)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn at the first caller outside nbdeploy (a notebook cell, a script), however deep
    inside nbdeploy the warning starts: Python 3.12's ``skip_file_prefixes``, on 3.10+.
    A fixed ``stacklevel`` points at the wrong line as soon as a call path changes."""
    level, frame = 2, sys._getframe(1)
    caller: FrameType | None = frame
    while caller is not None and caller.f_code.co_filename.startswith(_PACKAGE):
        caller, level = caller.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
