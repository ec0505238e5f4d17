"""The names of the files and folders in a model repository. No dependencies: the
notebook side (``control``, ``nbd.serve``) needs them without the server's packages."""

from __future__ import annotations

__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "RESERVED_NAMES",
    "STAGING",
    "START_LOCK_FILE",
    "STATE_FILE",
    "TRAFFIC_FILE",
]

CONFIG_FILE = "config.pbtxt"  # per model, Triton's
TRAFFIC_FILE = "traffic.json"  # per model: which versions serve, and their shares
STATE_FILE = "server.json"  # the running server (pid, ports, token), if any
LOG_FILE = "server.log"
STAGING = ".staging"  # files on their way in (cleared at start)
LOCK_FILE = ".server.lock"  # held by the serving process
START_LOCK_FILE = ".start.lock"  # held by a notebook while it starts one
RESERVED_NAMES = frozenset({STATE_FILE, LOG_FILE})  # files of the repository itself
