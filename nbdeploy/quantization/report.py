"""What a quantization did: per-weight errors, size, and how far the outputs moved."""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper

from .. import _html
from ..errors import ArtifactError, NbDeployError
from ..graph.activation_report import INLINE_BYTES
from .weights import TensorError, error_of

if TYPE_CHECKING:
    from ..artifact import Artifact
    from ..graph.activation_report import ActivationReport
    from .budget import BudgetReport


@dataclass(frozen=True)
class QuantizationReport:
    """The result of :func:`nbdeploy.quantization`.

    Attributes:
        scheme: The scheme's name.
        settings: Its settings (per_channel, bits, calibration method, ...).
        tensors: Per quantized weight, its error: where accuracy went.
        size_before: Model bytes before.
        size_after: Model bytes after.
        output_max_abs: Per output, the largest change on the example inputs.
        rewritten: Per node rewrite, how many (``"MatMul → MatMulNBits": 72``), for
            schemes that replace operators.
        kept_float: Per node such a scheme left in float, why.
        budget: With ``max_drop=``, how the accuracy budget was met: every attempt,
            the nodes kept in float, and what they cost in size and latency.
        source: The (unquantized, quantized) artifacts, for :meth:`activations`.
    """

    scheme: str
    settings: dict[str, Any]
    tensors: tuple[TensorError, ...]
    size_before: int
    size_after: int
    output_max_abs: dict[str, float]
    rewritten: dict[str, int] = field(default_factory=dict)
    kept_float: dict[str, str] = field(default_factory=dict)
    budget: BudgetReport | None = None
    source: Origin | None = field(default=None, compare=False, repr=False)
    _kept: dict[str, ActivationReport] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def size_ratio(self) -> float:
        """size_after / size_before."""
        return self.size_after / self.size_before if self.size_before else 1.0

    def worst(self, n: int = 5) -> list[TensorError]:
        """The ``n`` weights with the lowest signal-to-noise ratio."""
        return sorted(self.tensors, key=lambda t: t.snr_db)[:n]

    def activations(self, data: Any = None) -> ActivationReport:
        """Where in the network the quantized model drifts from its input, tensor by
        tensor: :func:`nbdeploy.activations` of the two. Without ``data``, on the
        artifacts' example (random inputs when there is none), computed once and kept.

        Raises:
            ArtifactError: The unquantized artifact is gone (this report holds it weakly);
                call ``nbd.activations(original, quantized)`` with both.
        """
        if data is None and "example" in self._kept:
            return self._kept["example"]
        pair = self.source() if self.source is not None else None
        if pair is None:
            raise ArtifactError(
                "the unquantized artifact is no longer in memory; "
                "call nbd.activations(original, quantized) with both."
            )
        from ..graph.activations import activations

        report = activations(*pair, data)
        if data is None:
            self._kept["example"] = report
        return report

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "scheme": self.scheme, "settings": self.settings,
            "tensors": [asdict(t) for t in self.tensors], "size_before": self.size_before,
            "size_after": self.size_after, "output_max_abs": self.output_max_abs,
            "rewritten": self.rewritten, "kept_float": self.kept_float,
            "budget": self.budget.to_dict() if self.budget is not None else None,
        }  # fmt: skip

    def __str__(self) -> str:
        lines = [
            f"{self.scheme}: {_html.human_bytes(self.size_before)} → "
            f"{_html.human_bytes(self.size_after)} ({self.size_ratio:.2f}×), "
            f"{len(self.tensors)} weights quantized; output change "
            + ", ".join(f"{k}: {v:.3g}" for k, v in self.output_max_abs.items())
        ]
        lines += [f"  {rule}: {count}" for rule, count in self.rewritten.items()]
        lines += [f"  kept float: {node} ({why})" for node, why in self.kept_float.items()]
        for t in self.worst():
            lines.append(f"  {t.name:<40} SNR {t.snr_db:6.1f} dB  max |Δ| {t.max_abs:.3g}")
        if self.budget is not None:
            lines.append(str(self.budget))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [(t.name, t.elements, f"{t.snr_db:.1f}", t.rmse, t.max_abs) for t in
                sorted(self.tensors, key=lambda t: t.snr_db)]  # fmt: skip
        table = _html.table(["weight", "values", "SNR dB", "RMSE", "max |Δ|"], rows)
        head = _html.fields([
            ("size", f"{_html.human_bytes(self.size_before)} → "
                     f"{_html.human_bytes(self.size_after)} ({self.size_ratio:.2f}×)"),
            ("settings", ", ".join(f"{k}={v}" for k, v in self.settings.items())),
            ("output change", ", ".join(f"{k}: {v:.3g}" for k, v in self.output_max_abs.items())),
            *((rule, str(count)) for rule, count in self.rewritten.items()),
        ])  # fmt: skip
        if self.kept_float:
            table += _html.table(["kept float", "why"], list(self.kept_float.items()))
        budget = self.budget._repr_html_() if self.budget is not None else ""
        return _html.card(f"Quantization {self.scheme}",
                          head + budget + table + self._drift_html())  # fmt: skip

    def _drift_html(self) -> str:
        """The five nodes doing the most damage, when that is cheap (a small model with
        an example, its unquantized artifact still in memory); else how to ask."""
        hint = _html.Raw("<p><code>q.report.activations()</code> or "
                         "<code>nbd.activations(original, q)</code>: where the outputs "
                         "drift, tensor by tensor</p>")  # fmt: skip
        pair = self.source() if self.source is not None else None
        if pair is None or pair[0].example is None or self.size_before > INLINE_BYTES:
            return hint
        try:
            drift = self.activations()
        except NbDeployError:
            return hint
        rows = [(t.tensor, t.nodes, t.op, f"{t.sqnr_db:.1f}", _own(t.own_db), t.max_abs)
                for t in drift.worst(5)]  # fmt: skip
        table = _html.table(["tensor", "node", "op", "SQNR dB", "own dB", "max |Δ|"], rows)
        return (f"<p><b>Where the outputs drift</b> ({_html.cell(drift.headline())}; "
                f"<code>q.report.activations()</code> for every tensor)</p>{table}")  # fmt: skip


def _own(own_db: float) -> str:
    return "none added" if own_db == float("inf") else f"{own_db:.1f}"


class Origin:
    """The (unquantized, quantized) artifacts a report speaks of, while the unquantized
    one lives: held weakly, so a report never keeps its input alive, and never pickled
    (an unpickled report has none)."""

    def __init__(self, original: Artifact | None = None, quantized: Artifact | None = None):
        self._original = weakref.ref(original) if original is not None else None
        self._quantized = quantized

    def __call__(self) -> tuple[Artifact, Artifact] | None:
        """Both artifacts, or ``None`` once the unquantized one is gone."""
        original = self._original() if self._original is not None else None
        if original is None or self._quantized is None:
            return None
        return original, self._quantized

    def __reduce__(self) -> tuple[type[Origin], tuple[()]]:
        return Origin, ()


def onnxruntime_errors(original: onnx.ModelProto, quantized: onnx.ModelProto) -> list[TensorError]:
    """Per-weight errors of a model quantized by onnxruntime (``W_quantized`` + scale and
    zero point, or a float16 copy under the same name)."""
    before = {
        i.name: i for i in original.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
    }
    after = {i.name: i for i in quantized.graph.initializer}
    errors = []
    for name, init in before.items():
        weight = numpy_helper.to_array(init)
        if weight.ndim < 2:
            continue
        if f"{name}_quantized" in after:
            restored = _dequantize(after, name, weight.shape)
        elif name in after and after[name].data_type != init.data_type:
            restored = numpy_helper.to_array(after[name]).astype(np.float32)
        else:
            continue
        if restored is not None and restored.shape == weight.shape:
            errors.append(error_of(name, weight, restored))
    return errors


def _dequantize(
    after: dict[str, onnx.TensorProto], name: str, shape: tuple[int, ...]
) -> np.ndarray | None:
    q = numpy_helper.to_array(after[f"{name}_quantized"]).astype(np.float32)
    if f"{name}_scale" not in after:
        return None
    scale = numpy_helper.to_array(after[f"{name}_scale"]).astype(np.float32)
    zero = (numpy_helper.to_array(after[f"{name}_zero_point"]).astype(np.float32)
            if f"{name}_zero_point" in after else np.zeros_like(scale))  # fmt: skip
    if scale.size > 1:  # per channel: find the axis whose length matches
        axis = next((i for i, d in enumerate(shape) if d == scale.size), 0)
        view = [1] * len(shape)
        view[axis] = -1
        scale, zero = scale.reshape(view), zero.reshape(view)
    restored: np.ndarray = (q - zero) * scale
    return restored
