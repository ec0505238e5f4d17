"""The report of ``nbd.optimize``: what each pass did, and whether answers stayed the same."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .. import _html
from ..provenance import Parity


@dataclass(frozen=True)
class PassRecord:
    """One pass of the pipeline (summed over the rounds it ran in).

    Attributes:
        name: The pass.
        fired: How many times each of its rules fired.
        nodes_before: Nodes before it first ran (subgraphs included).
        nodes_after: ``nodes_before`` minus the nodes it removed over all rounds.
        seconds: Time it took.
    """

    name: str
    fired: dict[str, int]
    nodes_before: int
    nodes_after: int
    seconds: float
    note: str = ""

    def merge(self, later: PassRecord) -> PassRecord:
        """This pass's record combined with its record from a later round."""
        fired = dict(self.fired)
        for rule, count in later.fired.items():
            fired[rule] = fired.get(rule, 0) + count
        note = self.note or later.note
        seconds = self.seconds + later.seconds
        after = self.nodes_after - later.removed  # nodes_after - nodes_before sums over rounds
        return PassRecord(self.name, fired, self.nodes_before, after, seconds, note)

    @property
    def removed(self) -> int:
        """Nodes this pass removed (negative if it added some), over all rounds."""
        return self.nodes_before - self.nodes_after

    @property
    def total(self) -> int:
        """Firings of all rules."""
        return sum(self.fired.values())


@dataclass(frozen=True)
class OptimizationReport:
    """Every pass's record, node counts and the parity of the result with its input."""

    passes: tuple[PassRecord, ...]
    parity: Parity | None
    nodes_before: int
    nodes_after: int

    def fired(self, pass_name: str) -> dict[str, int]:
        """Rule firings of one pass (empty if it did not run)."""
        return next((p.fired for p in self.passes if p.name == pass_name), {})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "passes": [asdict(p) for p in self.passes],
            "parity": self.parity.to_dict() if self.parity else None,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
        }

    def __str__(self) -> str:
        lines = [f"optimize: {self.nodes_before} → {self.nodes_after} nodes"]
        for p in self.passes:
            rules = ", ".join(f"{k} ×{v}" for k, v in p.fired.items()) or p.note or "nothing to do"
            lines.append(
                f"  {p.name:<34} {-p.removed:+6d} nodes {p.seconds * 1e3:7.1f} ms  {rules}"
            )
        lines.append(f"  parity: {self.parity}" if self.parity else "  parity: not checked")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            (
                p.name,
                _html.Raw("<br>".join(f"{_html.cell(k)} ×{v}" for k, v in p.fired.items()))
                or p.note
                or "–",
                f"{-p.removed:+d}",
                f"{p.seconds * 1e3:.1f} ms",
            )
            for p in self.passes
        ]
        table = _html.table(["pass", "rules fired", "nodes", "time"], rows)
        verdict: Any = "not checked"
        if self.parity is not None:
            verdict = _html.verdict(self.parity.ok, str(self.parity))
        body = table + _html.fields([("parity", verdict)])
        return _html.card(f"Optimization: {self.nodes_before} → {self.nodes_after} nodes", body)
