"""``nbd.quantize(..., max_drop=)``: quantize, measure, and put the nodes doing the most
damage back in float until the metric's drop fits the budget.

Intel Neural Compressor's accuracy-aware tuning and Olive's search are the anchors; this
one ranks nodes once, by the noise each adds (:func:`nbdeploy.activations`' ``own_db``),
then looks for the shortest prefix of that ranking which, kept in float, meets the
budget: it doubles the prefix (1, 2, 4, … nodes) until the drop fits, then bisects
between the last prefix that failed and the first that fitted. Every attempt is one
quantization and one scoring; all of them are in the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _html, _warnings
from .._feed import as_feed, batch_size
from .._progress import detail, steps
from ..bench.metrics import Metric, MetricFn, resolve
from ..bench.providers import session_for
from ..bench.scoring import predict_all, split_data
from ..bench.timing import time_call
from ..errors import ConfigError
from .report import QuantizationReport

if TYPE_CHECKING:
    from ..artifact import Artifact

__all__ = ["Budget", "BudgetReport", "BudgetStep", "meet"]

Requantize = Callable[[list[str]], "Artifact"]
_RANKING_ROWS = 64  # rows the activation report runs on


@dataclass(frozen=True)
class Budget:
    """The largest drop allowed, and the labelled data and metric it is measured with."""

    max_drop: float
    metric: Metric
    x: dict[str, np.ndarray]
    y: np.ndarray

    @classmethod
    def of(cls, max_drop: float, data: Any, metric: str | MetricFn, art: Artifact) -> Budget:
        """Check the arguments ``nbd.quantize`` was given for a budget."""
        if not np.isfinite(max_drop) or max_drop < 0:
            raise ConfigError(f"max_drop must be a number ≥ 0, not {max_drop!r}.")
        if data is None:
            raise ConfigError(
                "max_drop= needs data=(x_val, y_val): labelled data the drop is measured "
                "on, ideally not the calibration data."
            )
        x, y = split_data(data, art)
        if y is None:
            raise ConfigError("max_drop= needs labels: pass data=(x_val, y_val), not inputs alone.")
        if len(y) != batch_size(x):
            raise ConfigError(f"data= has {batch_size(x)} inputs but {len(y)} labels.")
        return cls(float(max_drop), resolve(metric), x, y)

    def score(self, art: Artifact) -> float:
        """The metric of ``art`` on the data, run on the CPU."""
        session = session_for(art, "cpu")
        return self.metric.fn(self.y, predict_all(list(art.inputs), self.x, session))

    def drop(self, reference: float, value: float) -> float:
        """How much worse ``value`` is than ``reference``, in the metric's units."""
        return reference - value if self.metric.higher_is_better else value - reference


@dataclass(frozen=True)
class BudgetStep:
    """One attempt: the nodes kept in float and what the result scored.

    Attributes:
        kept_float: Node names left unquantized (the most damaging first).
        metric: The metric of the quantized model.
        drop: Its drop from the unquantized model's metric.
        size_bytes: The quantized model's size.
        fits: Whether the drop is within the budget.
    """

    kept_float: tuple[str, ...]
    metric: float
    drop: float
    size_bytes: int
    fits: bool


@dataclass(frozen=True, repr=False)
class BudgetReport:
    """How ``nbd.quantize(..., max_drop=)`` met (or missed) its budget.

    Attributes:
        metric: The metric's name; ``higher_is_better`` its direction.
        max_drop: The budget, in the metric's units (points for accuracy).
        reference_metric: The unquantized model's metric.
        reference_size: The unquantized model's size.
        ranking: Groups of nodes by the damage done to the tensor they make and read in
            the fully quantized model, worst first (empty when that model fitted): each
            attempt keeps a prefix of them in float.
        steps: Every attempt, in the order made; the first quantizes everything.
        chosen: The index in ``steps`` of the model returned: the fitting attempt with
            the fewest nodes in float, else (budget missed) the smallest drop.
        latency_ms: p50 at batch 1 on the CPU of the ``"unquantized"``, ``"all
            quantized"`` and ``"chosen"`` models.
    """

    metric: str
    higher_is_better: bool
    max_drop: float
    reference_metric: float
    reference_size: int
    ranking: tuple[tuple[str, ...], ...]
    steps: tuple[BudgetStep, ...]
    chosen: int
    latency_ms: dict[str, float]

    @property
    def met(self) -> bool:
        """Whether the returned model's drop is within the budget."""
        return self.steps[self.chosen].fits

    @property
    def kept_float(self) -> tuple[str, ...]:
        """The nodes the returned model keeps in float."""
        return self.steps[self.chosen].kept_float

    def headline(self) -> str:
        """One sentence: met or missed, with how many nodes kept in float."""
        step, first = self.steps[self.chosen], self.steps[0]
        kept = len(step.kept_float)
        how = "everything quantized" if not kept else f"{kept} node{'s'[: kept != 1]} kept float"
        verdict = "met" if self.met else "MISSED"
        return (
            f"{self.metric} drop ≤ {self.max_drop:g}: {verdict} with {how} "
            f"(drop {step.drop:.3g}; all quantized: {first.drop:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**dataclasses.asdict(self), "met": self.met, "kept_float": list(self.kept_float)}

    def __repr__(self) -> str:
        return f"<BudgetReport {self.headline()}; {len(self.steps)} attempts>"

    def __str__(self) -> str:
        lines = [self.headline(), *(f"  {name:<14} {text}" for name, text in self._summary())]
        lines.append("  steps:")
        for number, step in enumerate(self.steps, 1):
            lines.append(f"    {number}. {_step_text(step, self.metric)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = _html.fields([(name, text) for name, text in self._summary()])
        rows = [(number, ", ".join(s.kept_float) or "—", f"{s.metric:.4g}", f"{s.drop:.3g}",
                 _html.human_bytes(s.size_bytes), _html.verdict(s.fits, "fits" if s.fits
                 else "over budget"))
                for number, s in enumerate(self.steps, 1)]  # fmt: skip
        table = _html.table(["step", "kept float", self.metric, "drop", "size", ""], rows)
        return _html.card(f"Accuracy budget · {self.headline()}", head + table)

    def _summary(self) -> list[tuple[str, str]]:
        """Unquantized / all quantized / chosen: metric, size and latency side by side."""
        first, chosen = self.steps[0], self.steps[self.chosen]
        lat = self.latency_ms
        return [
            ("unquantized", _side(self.metric, self.reference_metric, None,
                                  self.reference_size, lat.get("unquantized"))),
            ("all quantized", _side(self.metric, first.metric, first.drop, first.size_bytes,
                                    lat.get("all quantized"))),
            ("chosen", _side(self.metric, chosen.metric, chosen.drop, chosen.size_bytes,
                             lat.get("chosen"))),
            ("kept float", ", ".join(chosen.kept_float) or "nothing"),
        ]  # fmt: skip


def meet(
    art: Artifact, requantize: Requantize, budget: Budget, *, progress: bool | None
) -> Artifact:
    """Quantize ``art`` (through ``requantize(nodes kept float)``) within ``budget``."""
    names = ["score the unquantized model", "quantize everything", "rank nodes by damage",
             "keep nodes in float", "time the result"]  # fmt: skip
    with steps(f"quantize {art.name} within a drop of {budget.max_drop:g}", names,
               enabled=progress) as job:  # fmt: skip
        job.step(names[0])
        search = _Search(requantize, budget, budget.score(art))
        job.step(names[1])
        if not search.attempt(0).fits:
            job.step(names[2])
            search.ranking = _ranking(art, search.quantized[0], budget.x)
            job.step(names[3])
            search.run()
        job.step(names[4])
        chosen = search.chosen()
        models = {
            "unquantized": art,
            "all quantized": search.quantized[0],
            "chosen": search.quantized[chosen],
        }
        latency = _latency(models, budget.x)
    report = BudgetReport(
        budget.metric.name, budget.metric.higher_is_better, budget.max_drop, search.reference,
        art.size_bytes, search.ranking, tuple(search.steps[k] for k in search.order),
        search.order.index(chosen), latency,
    )  # fmt: skip
    if not report.met:
        _warnings.warn(f"quantize: {report.headline()}. {_why_missed(art, report)} "
                       "Returning the attempt with the smallest drop.")  # fmt: skip
    result = search.quantized[chosen]
    assert isinstance(result.report, QuantizationReport)
    return dataclasses.replace(result, report=dataclasses.replace(result.report, budget=report))


class _Search:
    """Attempts keyed by how many of the ranked groups stay float (0: none). Only the
    artifacts still needed are kept: the first attempt's and the best so far."""

    def __init__(self, requantize: Requantize, budget: Budget, reference: float) -> None:
        self.requantize, self.budget, self.reference = requantize, budget, reference
        self.ranking: tuple[tuple[str, ...], ...] = ()
        self.quantized: dict[int, Artifact] = {}
        self.steps: dict[int, BudgetStep] = {}
        self.order: list[int] = []

    def attempt(self, kept: int) -> BudgetStep:
        """Quantize with the ``kept`` most damaging groups in float, and score it."""
        if kept not in self.steps:
            nodes = tuple(node for group in self.ranking[:kept] for node in group)
            quantized = self.requantize(list(nodes))
            value = self.budget.score(quantized)
            drop = self.budget.drop(self.reference, value)
            step = BudgetStep(nodes, value, drop, quantized.size_bytes,
                              drop <= self.budget.max_drop)  # fmt: skip
            self.quantized[kept], self.steps[kept] = quantized, step
            self.order.append(kept)
            best = self.chosen()
            self.quantized = {k: a for k, a in self.quantized.items() if k in (0, best)}
            detail(f"attempt {len(self.order)}: {_step_text(step, self.budget.metric.name)}")
        return self.steps[kept]

    def run(self) -> None:
        """Double the float prefix of groups until it fits, then bisect for the shortest
        that does."""
        failed, kept = 0, 1
        while not self.attempt(min(kept, len(self.ranking))).fits:
            if kept >= len(self.ranking):
                return
            failed, kept = kept, kept * 2
        fits = min(kept, len(self.ranking))
        while fits - failed > 1:
            middle = (failed + fits) // 2
            if self.attempt(middle).fits:
                fits = middle
            else:
                failed = middle

    def chosen(self) -> int:
        """The fitting attempt with the fewest float nodes, else the smallest drop."""
        fitting = [k for k in self.steps if self.steps[k].fits]
        if fitting:
            return min(fitting)
        return min(self.steps, key=lambda k: (self.steps[k].drop, k))


def _ranking(
    art: Artifact, quantized: Artifact, x: dict[str, np.ndarray]
) -> tuple[tuple[str, ...], ...]:
    """Groups of ``art``'s nodes by the damage their tensor takes in ``quantized``, the
    most first (lowest ``damage_db``): the node making the tensor (with one folded into
    it) and the nodes reading it, since a tensor stays unquantized only when all of them
    stay float. By name (what ``exclude=`` takes): unnamed nodes cannot stay float."""
    from ..graph.activations import activations

    drift = activations(art, quantized, x, rows=min(_RANKING_ROWS, batch_size(x)))
    named = {node.name for node in art.onnx.graph.node if node.name}
    readers: dict[str, list[str]] = {}
    for node in art.onnx.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    groups: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for tensor in drift.worst(len(drift.tensors)):
        if tensor.damage_db == float("inf"):
            continue
        nodes = [tensor.fused_with, tensor.node, *readers.get(tensor.tensor, [])]
        group = tuple(dict.fromkeys(n for n in nodes if n in named and n not in seen))
        if group:
            groups.append(group)
            seen.update(group)
    return tuple(groups)


def _latency(models: dict[str, Artifact], x: dict[str, np.ndarray]) -> dict[str, float]:
    """p50 at batch 1 on the CPU, in ms, of each model."""
    out = {}
    for label, model in models.items():
        run = partial(session_for(model, "cpu").run, None,
                      as_feed({k: v[:1] for k, v in x.items()}, model.inputs))  # fmt: skip
        out[label] = time_call(run, repeat=5, max_runs=5).p50 * 1e3
    return out


def _why_missed(art: Artifact, report: BudgetReport) -> str:
    """What to try when no prefix of the ranking met the budget."""
    unnamed = sum(1 for node in art.onnx.graph.node if not node.name)
    if unnamed:
        total = len(art.onnx.graph.node)
        return (f"{unnamed} of {total} nodes have no names, and exclude= takes names: "
                "name them (onnx-ir, or re-export) and try again.")  # fmt: skip
    return (
        "Even with every node that adds noise kept float it does not fit: try a "
        "gentler scheme (int8-weight-symmetric, fp16) or more calibration data."
    )


def _side(metric: str, value: float, drop: float | None, size: int, p50: float | None) -> str:
    text = f"{metric} {value:.4g}" + ("" if drop is None else f" (drop {drop:.3g})")
    text += f" · {_html.human_bytes(size)}"
    return text + ("" if p50 is None else f" · p50 {p50:.3g} ms")


def _step_text(step: BudgetStep, metric: str) -> str:
    kept = ", ".join(step.kept_float) or "nothing"
    verdict = "fits" if step.fits else "over budget"
    return f"float: {kept} → {metric} {step.metric:.4g}, drop {step.drop:.3g} ({verdict})"
