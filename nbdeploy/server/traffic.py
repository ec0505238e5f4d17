"""Traffic between the versions of one model: which versions are loaded and what share
of the requests that name no version each one answers. Pure functions over
``{version: share}`` maps; a version in the map is loaded, even at share 0 (kept warm so a
rollback is instant).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from ..errors import ProtocolError

__all__ = ["Traffic", "by_policy", "canary", "check", "pick", "promote", "replace", "rollback"]

Traffic = dict[int, float]


def check(traffic: Mapping[int, float], on_disk: Sequence[int]) -> Traffic:
    """A requested traffic map, if its versions exist and its shares make sense."""
    missing = sorted(set(traffic) - set(on_disk))
    if missing:
        raise ProtocolError(f"version(s) {missing} are not in the repository (it has {on_disk})")
    shares = traffic.values()
    if not traffic or not all(math.isfinite(s) and s >= 0 for s in shares) or not sum(shares):
        raise ProtocolError(
            f"traffic {dict(traffic)} must give non-negative shares with a positive total"
        )
    return dict(traffic)


def by_policy(policy: str, count: int, specific: Sequence[int], on_disk: Sequence[int]) -> Traffic:
    """Triton's version policy (``latest`` n, ``all``, ``specific``): the newest one serves."""
    if policy == "all":
        chosen = list(on_disk)
    elif policy == "specific":
        chosen = sorted(specific)
    else:
        chosen = sorted(on_disk)[-max(count, 1) :]
    if not chosen:
        raise ProtocolError("the model has no version folder with a model file in it")
    return check({v: 100.0 if v == max(chosen) else 0.0 for v in chosen}, on_disk)


def canary(current: Mapping[int, float], new: int, percent: float) -> Traffic:
    """``percent`` of the traffic to ``new``, the rest to the version serving most now."""
    if not 0 < percent < 100:
        raise ProtocolError(f"canary must be a percentage between 0 and 100, not {percent}")
    serving = [v for v, share in current.items() if share > 0 and v != new]
    if not serving:
        raise ProtocolError("a canary needs a version already serving to split traffic with")
    stable = max(serving, key=lambda v: (current[v], v))
    return {stable: 100.0 - percent, new: float(percent)}


def replace(current: Mapping[int, float], new: int) -> Traffic:
    """All traffic to ``new``; the version serving most now stays warm (for a rollback)."""
    serving = [v for v, share in current.items() if share > 0 and v != new]
    keep = {max(serving, key=lambda v: (current[v], v)): 0.0} if serving else {}
    return {**keep, new: 100.0}


def promote(current: Mapping[int, float]) -> Traffic:
    """All traffic to the newest loaded version; the one it replaces stays warm."""
    newest = max(current)
    serving = [v for v, share in current.items() if share > 0 and v != newest]
    keep = {max(serving): 0.0} if serving else {}
    return {**keep, newest: 100.0}


def rollback(current: Mapping[int, float], on_disk: Sequence[int]) -> Traffic:
    """All traffic back to the version before the newest; the newest is unloaded."""
    newest = max(current)
    older = [v for v in current if v < newest] or [v for v in on_disk if v < newest]
    if not older:
        raise ProtocolError(f"version {newest} is the first one; there is nothing to roll back to")
    return {max(older): 100.0}


def pick(traffic: Mapping[int, float]) -> int:
    """The version one request goes to, drawn by share."""
    versions = [v for v, share in traffic.items() if share > 0]
    if len(versions) == 1:
        return versions[0]
    return random.choices(versions, weights=[traffic[v] for v in versions])[0]
