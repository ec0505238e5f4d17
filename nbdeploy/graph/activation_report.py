"""The result of :func:`nbdeploy.activations`: per intermediate tensor, how far a variant
drifts from its reference, in the reference graph's topological order."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .. import _html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["INLINE_BYTES", "ActivationReport", "TensorDrift", "Unmatched"]

# Reports made without being asked (a quantization's HTML, compare's notes) only for
# models up to this size: one runs both models with every intermediate tensor fetched.
INLINE_BYTES = 64_000_000


@dataclass(frozen=True)
class TensorDrift:
    """One intermediate tensor of the reference, matched in the variant.

    Attributes:
        tensor: The tensor's name in the reference.
        node: The reference node that makes it (``op_type#index`` when unnamed); the
            name ``nbd.quantize(..., exclude=[...])`` takes.
        op: That node's operator.
        depth: The node's position in the reference graph's topological order.
        variant_tensor: The tensor it was compared with in the variant.
        matched_by: ``"name"``, ``"qdq"`` for a QDQ model's dequantized copy of it
            (onnxruntime's ``create_activation_matching``), or ``"scope"`` for a PyTorch
            submodule's output (``tensor`` is then the module's name, ``op`` its class).
        sqnr_db: Signal-to-quantization-noise ratio, ``20·log10(‖ref‖ / ‖ref − var‖)``
            (onnxruntime's ``qdq_loss_debug`` formula); ``inf`` when equal.
        max_abs: Largest absolute difference.
        own_db: The SQNR this node's output would have if its inputs were exact: the
            noise-to-signal power it adds over its noisiest input (a first-order estimate
            that treats the relative noise as passing through unchanged). The lowest is
            where the most damage is done. ``inf`` when it adds none, or when its
            noisiest input is already below 3 dB, where nothing can be told apart.
        identical: Equal within float tolerance (``rtol=1e-4, atol=1e-5``).
        qdq_sqnr_db: For ``"qdq"`` matches, the SQNR of this tensor's own quantize →
            dequantize step (pre- vs post-QDQ in the variant); else ``None``.
        fused_with: The reference node the variant merged into this tensor's maker (a
            Relu folded into the MatMul before it writes the Relu's output name): that
            node's damage shows here, and its own output is unmatched.
        channel_sqnr_db: The lowest SQNR of one channel (a slice along axis 1 or the
            last axis): near 0 dB when one scale for the whole tensor rounds its smaller
            channels to zero, as an outlier channel makes it, however good ``sqnr_db``
            looks (the outlier dominates the tensor's norm). Each channel's signal counts
            as at least the median channel's, so a nearly silent channel is not "lost"
            for a little noise. Below rank 2, ``sqnr_db``.
        own_channel_db: ``own_db`` for ``channel_sqnr_db``: the worst channel's noise
            this node adds over its inputs'.
    """

    tensor: str
    node: str
    op: str
    depth: int
    variant_tensor: str
    matched_by: str
    sqnr_db: float
    max_abs: float
    own_db: float
    identical: bool
    qdq_sqnr_db: float | None = None
    fused_with: str | None = None
    channel_sqnr_db: float = math.inf
    own_channel_db: float = math.inf

    @property
    def damage_db(self) -> float:
        """How much damage this node does: the lower of ``own_db`` and
        ``own_channel_db`` (``inf``: none)."""
        return min(self.own_db, self.own_channel_db)

    @property
    def nodes(self) -> str:
        """The node, after the one folded into it if any: ``"matmul_c + relu_h2"``."""
        return self.node if self.fused_with is None else f"{self.fused_with} + {self.node}"


@dataclass(frozen=True)
class Unmatched:
    """A reference tensor the variant has no counterpart for.

    Attributes:
        tensor: The tensor's name in the reference.
        node: The reference node that makes it.
        reason: Why (fused or renamed away, not a float tensor, another shape).
    """

    tensor: str
    node: str
    reason: str


@dataclass(frozen=True, repr=False)
class ActivationReport:
    """Per intermediate tensor, how far ``variant`` drifts from ``reference``.

    Attributes:
        reference: The reference artifact's variant label.
        variant: The compared artifact's.
        data: What the models ran on (``"example"``, ``"data"``, ``"random inputs"``)
            and how many rows.
        threshold_db: SQNR below which a tensor counts as diverged.
        tensors: Matched tensors in the reference's topological order.
        unmatched: Reference tensors with no counterpart in the variant.
    """

    reference: str
    variant: str
    data: str
    threshold_db: float
    tensors: tuple[TensorDrift, ...]
    unmatched: tuple[Unmatched, ...]

    @property
    def first_divergence(self) -> TensorDrift | None:
        """The first tensor, in topological order, whose SQNR is below ``threshold_db``."""
        return next((t for t in self.tensors if _diverged(t, self.threshold_db)), None)

    def worst(self, n: int = 5) -> list[TensorDrift]:
        """The ``n`` tensors whose nodes do the most damage (lowest ``damage_db``: own
        SQNR, of the whole tensor or its worst channel; then lowest SQNR), identical
        ones never."""
        hurt = [t for t in self.tensors if not t.identical]
        return sorted(hurt, key=lambda t: (t.damage_db, t.sqnr_db, t.depth))[:n]

    def headline(self) -> str:
        """One sentence: where the outputs first differ, or that they do not."""
        first = self.first_divergence
        if first is None:
            return (f"no tensor's SQNR falls below {self.threshold_db:g} dB "
                    f"({len(self.tensors)} matched)")  # fmt: skip
        return (
            f"the outputs first differ at {first.tensor} (node {first.nodes}), "
            f"SQNR {_db(first.sqnr_db)}, max abs {first.max_abs:.3g}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (an infinite SQNR, "identical", is written as ``None``)."""
        return {
            "reference": self.reference, "variant": self.variant, "data": self.data,
            "threshold_db": self.threshold_db,
            "tensors": [{k: _finite(v) for k, v in asdict(t).items()} for t in self.tensors],
            "unmatched": [asdict(u) for u in self.unmatched],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActivationReport:
        """The inverse of :meth:`to_dict`."""
        tensors = tuple(TensorDrift(**_infinite(t)) for t in data["tensors"])
        unmatched = tuple(Unmatched(**u) for u in data["unmatched"])
        return cls(data["reference"], data["variant"], data["data"], data["threshold_db"],
                   tensors, unmatched)  # fmt: skip

    def __repr__(self) -> str:
        return (f"<ActivationReport {self.reference} → {self.variant}: {self.headline()}; "
                f"{len(self.tensors)} tensors, {len(self.unmatched)} unmatched>")  # fmt: skip

    def __str__(self) -> str:
        lines = [f"{self.reference} → {self.variant} on {self.data}: {self.headline()}"]
        for t in self.worst():
            lines.append(f"  {t.tensor:<36} {t.nodes:<24} SQNR {_db(t.sqnr_db):>9}  "
                         f"own {_added(t.own_db):>9}  max |Δ| {t.max_abs:.3g}")  # fmt: skip
        if self.unmatched:
            lines.append(f"  {len(self.unmatched)} unmatched: "
                         + ", ".join(u.tensor for u in self.unmatched[:8])
                         + (" …" if len(self.unmatched) > 8 else ""))  # fmt: skip
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        first = self.first_divergence
        ranked = self.worst(len(self.tensors))
        ranked += [t for t in self.tensors if t.identical]
        rows = [
            (_html.Raw(f"<b>▶ {_html.cell(t.tensor)}</b>") if t is first else t.tensor,
             t.nodes, t.op, t.depth, _verdict(t, self.threshold_db), _added(t.own_db), t.max_abs,
             _db(t.qdq_sqnr_db) if t.qdq_sqnr_db is not None else "–",
             _db(t.channel_sqnr_db))
            for t in ranked
        ]  # fmt: skip
        table = _html.table(["tensor", "node", "op", "depth", "SQNR", "own SQNR", "max |Δ|",
                             "QDQ step", "worst channel"], rows)  # fmt: skip
        head = _html.fields([
            ("", _html.Raw(f"<b>{_html.cell(self.headline())}</b>")),
            ("data", self.data),
            ("matched", f"{len(self.tensors)} tensors, sorted by damage (own SQNR)"),
            ("unmatched", ", ".join(f"{u.tensor} ({u.reason})" for u in self.unmatched[:12])
                          + (" …" if len(self.unmatched) > 12 else "") or "–"),
        ])  # fmt: skip
        return _html.card(f"Activations {self.reference} → {self.variant}", head + table)

    def plot(self) -> Figure:
        """A matplotlib Figure: SQNR of each matched tensor along the network's depth
        (identical tensors drawn at the top), the threshold and the first divergence."""
        from .activation_plot import sqnr_figure

        return sqnr_figure(self)


def _diverged(t: TensorDrift, threshold_db: float) -> bool:
    return not t.identical and t.sqnr_db < threshold_db


def _verdict(t: TensorDrift, threshold_db: float) -> _html.Raw:
    if t.identical:
        return _html.verdict(True, "identical")
    return _html.verdict(not _diverged(t, threshold_db), _db(t.sqnr_db))


def _db(value: float | None) -> str:
    if value is None or value == math.inf:
        return "identical"
    return f"{value:.1f} dB"


def _infinite(row: dict[str, Any]) -> dict[str, Any]:
    """A tensor row of :meth:`ActivationReport.to_dict` with its SQNRs back to floats."""
    return {k: math.inf if k in _ALWAYS_FLOAT and v is None else v
            for k, v in row.items()}  # fmt: skip


_ALWAYS_FLOAT = ("sqnr_db", "own_db", "channel_sqnr_db", "own_channel_db")


def _added(own_db: float) -> str:
    return "none added" if own_db == math.inf else f"{own_db:.1f} dB"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and value == math.inf else value
