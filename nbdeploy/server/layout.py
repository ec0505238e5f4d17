"""The names of the files and folders in a model repository. No dependencies: the
notebook side (``control``, ``nbd.serve``) needs them without the server's packages."""

from __future__ import annotations

import re

from ..errors import ProtocolError

__all__ = [
    "CONFIG_FILE",
    "EXTRAS",
    "LOCK_FILE",
    "LOG_FILE",
    "META_PREFIX",
    "MODEL_NAME",
    "RESERVED_NAMES",
    "STAGING",
    "START_LOCK_FILE",
    "STATE_FILE",
    "TRAFFIC_FILE",
    "check_model_name",
]

CONFIG_FILE = "config.pbtxt"  # per model, Triton's
TRAFFIC_FILE = "traffic.json"  # per model: which versions serve, and their shares
STATE_FILE = "server.json"  # the running server (pid, ports, token), if any
LOG_FILE = "server.log"
STAGING = ".staging"  # files on their way in (cleared at start)
LOCK_FILE = ".server.lock"  # held by the serving process
START_LOCK_FILE = ".start.lock"  # held by a notebook while it starts one
RESERVED_NAMES = frozenset({STATE_FILE, LOG_FILE})  # files of the repository itself
# What nbdeploy keeps beside a version's model file (Triton ignores other files there):
# a request to try it with, and the comparison that chose it. Key -> file name.
EXTRAS = {
    "example": "nbdeploy-example.json",  # a V2 JSON inference request body
    "report.html": "nbdeploy-report.html",
    "report.csv": "nbdeploy-report.csv",
}
META_PREFIX = "nbdeploy."  # the metadata keys nbdeploy owns in a model file (lineage, parity)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    """A model name that is safe as a folder name, or a 400 saying what is allowed."""
    if not MODEL_NAME.match(name) or ".." in name or name in RESERVED_NAMES:
        raise ProtocolError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', starting "
            "with a letter or digit (at most 128 characters, and not "
            f"{' or '.join(sorted(RESERVED_NAMES))})"
        )
    return name
