"""Named points where the server can be killed or slowed on purpose, to test crash
safety and what clients see while a restart brings large models back.

``NBDEPLOY_CRASH_AT=traffic-saved`` makes the server process kill itself with SIGKILL
(no cleanup, exactly as ``kill -9``) when it reaches that point; the fault-injection tests
then start it again as a user would and check that nothing committed was lost.
``NBDEPLOY_SLOW_RESTORE_S=3`` makes restoring each model take that much longer, as a
multi-GB model would. Unset, each costs one comparison.
"""

from __future__ import annotations

import asyncio
import os
import signal

__all__ = ["CRASH_POINTS", "crash_point", "slow_restore"]

CRASH_POINTS = (
    "staged",  # request files written to the staging area
    "loaded",  # new versions open in memory, nothing committed yet
    "version-committed",  # a version folder moved into place
    "config.pbtxt-temp-written",  # a new config written beside the old one, not yet swapped
    "config-saved",  # config.pbtxt replaced
    "traffic.json-temp-written",  # new traffic written beside the old one, not yet swapped
    "traffic-saved",  # traffic.json replaced; the reply is not sent yet
)

SUPERVISOR_PID = "NBDEPLOY_SUPERVISOR_PID"  # set in a worker process
_CRASH_AT = os.environ.get("NBDEPLOY_CRASH_AT", "")
_SLOW_RESTORE_S = float(os.environ.get("NBDEPLOY_SLOW_RESTORE_S") or 0)


def crash_point(name: str) -> None:
    """Die here, like ``kill -9``, if ``$NBDEPLOY_CRASH_AT`` names this point (a worker
    process kills its supervisor first: the whole server dies, its workers with it)."""
    if name == _CRASH_AT:
        supervisor = os.environ.get(SUPERVISOR_PID)
        if supervisor:
            os.kill(int(supervisor), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


async def slow_restore() -> None:
    """Wait ``$NBDEPLOY_SLOW_RESTORE_S`` seconds (restoring one model), if set."""
    if _SLOW_RESTORE_S > 0:
        await asyncio.sleep(_SLOW_RESTORE_S)
