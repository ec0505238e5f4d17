"""What each of the sidebar's actions will change, said before it is done: the split
before and after (``v1 75% → 0%, v2 25% → 100%``), which versions stop being served,
and why an action that would change nothing is disabled. Pure functions over the split
the server reports; the new split comes from the server's own traffic rules
(:mod:`nbdeploy.server.traffic`), so what the dialog says is what the server does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ProtocolError
from ..server import traffic as rules

__all__ = ["ACTIONS", "Plan", "percent", "plans", "split_text"]

ACTIONS = ("promote", "rollback", "unload")


@dataclass(frozen=True)
class Plan:
    """One action on one model, as its confirmation dialog states it.

    Attributes:
        action: ``"promote"``, ``"rollback"`` or ``"unload"``.
        enabled: Whether it would change anything.
        summary: One sentence: what it does (or, when disabled, why not).
        changes: One line per version whose share or state changes
            (``"v1 75% → 0% (stays loaded for an instant rollback)"``).
        before: The split now, by version (what Undo restores).
        after: The split it leads to (``{}``: nothing served).
    """

    action: str
    enabled: bool
    summary: str
    changes: tuple[str, ...] = ()
    before: dict[int, float] = field(default_factory=dict)
    after: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["changes"] = list(self.changes)
        for key in ("before", "after"):  # JSON object keys are strings
            doc[key] = {str(v): s for v, s in doc[key].items()}
        return doc


def percent(share: float) -> str:
    """``75%``, ``33.3%``, ``0.5%``: a share as people write it."""
    return f"{share:.0f}%" if float(share).is_integer() else f"{share:.3g}%"


def split_text(split: Mapping[int, float]) -> str:
    """``v1 75% · v2 25%`` (``nothing served`` for an empty split)."""
    return " · ".join(f"v{v} {percent(s)}" for v, s in sorted(split.items())) or "nothing served"


def plans(name: str, split: Mapping[int, float], on_disk: Sequence[int]) -> dict[str, Plan]:
    """Promote, rollback and unload of model ``name``, served now with ``split`` (shares by
    loaded version), whose versions on disk are ``on_disk``."""
    current = dict(split)
    if not current:
        why = f"{name} is not served now (serve it again with nbd.serve or %deploy)"
        return {action: Plan(action, False, why) for action in ACTIONS}
    return {
        "promote": _promote(name, current),
        "rollback": _rollback(name, current, on_disk),
        "unload": _unload(name, current),
    }


def _promote(name: str, current: dict[int, float]) -> Plan:
    newest = max(current)
    if len(current) == 1:
        return Plan(
            "promote",
            False,
            f"{name} has one version loaded (v{newest}): there is "
            "nothing to promote it over. Serve a new version with a canary first "
            "(%deploy --canary 10, or nbd.serve(..., canary=10)).",
            before=current,
        )
    if not any(share > 0 for version, share in current.items() if version != newest):
        # Promoting again would only unload the version kept warm for a rollback.
        return Plan("promote", False, f"v{newest} already takes all of the traffic", before=current)
    after = rules.promote(current)
    kept = [v for v, s in after.items() if v != newest and s == 0]
    summary = f"Sends all traffic to v{newest}"
    summary += f"; v{kept[0]} stays loaded at 0% for an instant rollback." if kept else "."
    return Plan("promote", True, summary, _changes(current, after), current, after)


def _rollback(name: str, current: dict[int, float], on_disk: Sequence[int]) -> Plan:
    newest = max(current)
    try:
        after = rules.rollback(current, on_disk)
    except ProtocolError:
        return Plan(
            "rollback",
            False,
            f"v{newest} is {name}'s first version: there is nothing to roll back to",
            before=current,
        )
    (back,) = after
    gone = sorted(set(current) - set(after))
    summary = (
        f"Sends all traffic back to v{back} and unloads {_versions(gone)} "
        f"({'its files stay' if len(gone) == 1 else 'their files stay'}; serve it again or Undo)."
    )
    if back not in current:
        summary += f" v{back} is loaded again from disk first."
    return Plan("rollback", True, summary, _changes(current, after), current, after)


def _unload(name: str, current: dict[int, float]) -> Plan:
    summary = (
        f"Stops serving {name}: requests to it fail until it is loaded again. Its "
        f"files stay on disk; Undo loads it again as it is now ({split_text(current)})."
    )
    return Plan("unload", True, summary, _changes(current, {}), current, {})


def _changes(before: Mapping[int, float], after: Mapping[int, float]) -> tuple[str, ...]:
    lines = []
    for version in sorted({*before, *after}):
        was, will = before.get(version), after.get(version)
        if was is None and will is not None:
            lines.append(f"v{version} not loaded → {percent(will)} (loaded from disk)")
        elif will is None and was is not None:
            lines.append(f"v{version} {percent(was)} → unloaded (its files stay)")
        elif was != will and was is not None and will is not None:
            note = " (stays loaded for an instant rollback)" if will == 0 else ""
            lines.append(f"v{version} {percent(was)} → {percent(will)}{note}")
    return tuple(lines)


def _versions(numbers: Sequence[int]) -> str:
    names = [f"v{v}" for v in numbers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
