"""Named points where the server can be killed on purpose, to test crash safety.

``NBDEPLOY_CRASH_AT=traffic-saved`` makes the server process kill itself with SIGKILL
(no cleanup, exactly as ``kill -9``) when it reaches that point; the fault-injection tests
then start it again as a user would and check that nothing committed was lost. Unset,
a crash point costs one string comparison.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_POINTS", "crash_point"]

CRASH_POINTS = (
    "staged",  # request files written to the staging area
    "loaded",  # new versions open in memory, nothing committed yet
    "version-committed",  # a version folder moved into place
    "config.pbtxt-temp-written",  # a new config written beside the old one, not yet swapped
    "config-saved",  # config.pbtxt replaced
    "traffic.json-temp-written",  # new traffic written beside the old one, not yet swapped
    "traffic-saved",  # traffic.json replaced; the reply is not sent yet
)

_CRASH_AT = os.environ.get("NBDEPLOY_CRASH_AT", "")


def crash_point(name: str) -> None:
    """Die here, like ``kill -9``, if ``$NBDEPLOY_CRASH_AT`` names this point."""
    if name == _CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)
