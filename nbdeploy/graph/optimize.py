"""``nbd.optimize``: a pipeline of visible, proven graph passes.

Every pass reports how often each of its rules fired, the node count before and after,
and its time. After the pipeline the result is compared with the input on the stored
example (random inputs of the right shape otherwise); a mismatch is traced to the pass
that caused it by re-running growing prefixes of the pipeline, and raised — a broken
model is never returned.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from .._feed import batch_size, random_feed
from .._progress import note as note_step
from .._progress import steps
from ..artifact import Artifact, require_onnx
from ..errors import ConfigError, NbDeployError, OptimizationError
from ..payloads import OnnxPayload
from ..provenance import Parity, compare_outputs
from ..types import Output
from .growth import GrowthLimit
from .passes import (
    LOOP_AND_SEQUENCE_OPS,
    BatchNormToAffine,
    CommonSubexpressionElimination,
    ConstantFolding,
    ConvBnFusion,
    CountingPass,
    DeadCodeElimination,
    NoOpElimination,
    ShapeSimplification,
    count_nodes,
)
from .report import OptimizationReport, PassRecord

__all__ = ["DEFAULT_PASSES", "PASSES", "optimize"]
log = logging.getLogger(__name__)

PASSES: dict[str, Callable[[], CountingPass]] = {
    "no-op-elimination": NoOpElimination,
    "conv-bn-fusion": ConvBnFusion,
    "batchnorm-to-affine": BatchNormToAffine,
    "constant-folding": ConstantFolding,
    "shape-simplification": ShapeSimplification,
    "common-subexpression-elimination": CommonSubexpressionElimination,
    "dead-code-elimination": DeadCodeElimination,
}
DEFAULT_PASSES = tuple(PASSES)
ORT_LEVELS = {"ort-basic": "ORT_ENABLE_BASIC", "ort-extended": "ORT_ENABLE_EXTENDED"}
LEVELS = ("default", "none", *ORT_LEVELS)
_ROUNDS = 3  # at most this many passes over the pipeline


def optimize(
    art: Artifact,
    passes: Sequence[str | CountingPass] | None = None,
    *,
    level: str = "default",
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    allow_growth: bool = False,
    progress: bool | None = None,
) -> Artifact:
    """Optimize an ONNX artifact's graph; the result's ``.report`` shows every pass.

    Args:
        art: The artifact to optimize (it is not changed).
        passes: Pass names from :data:`PASSES` (or pass objects), in order; the default
            pipeline when ``None``. ``"ort-basic"``/``"ort-extended"`` run onnxruntime's
            own offline optimizer as a pass.
        level: ``"default"``; ``"ort-extended"`` or ``"ort-basic"`` to append
            onnxruntime's offline optimizer; ``"none"`` for no passes.
        check: Compare the result with the input and raise on a mismatch.
        atol: Absolute tolerance of that comparison.
        rtol: Relative tolerance of that comparison.
        allow_growth: Keep a pass that makes the file larger than
            ``max(1.3 × the input, the input + 1 MiB)`` (folding computed weights into
            stored ones does); by default such a pass is rolled back and reported.
        progress: ``False`` for silence; otherwise a line naming the pass running
            appears once the optimization has run a second.

    Raises:
        OptimizationError: A pass crashed or changed the answers (names the pass), or, for
            a model kept on disk (which cannot be rolled back), grew past the limit.
        ConfigError: An unknown pass name or level.
    """
    pipeline = _pipeline(passes, level)
    model = _load_ir(art)
    before = count_nodes(model.graph)
    names = [p if isinstance(p, str) else p.name for p in pipeline]
    run = _Runner(
        pipeline,
        undo=art.onnx_path is None,
        limit=None if allow_growth else GrowthLimit.of(model, art.size_bytes),
    )
    with steps(f"optimize {art.name}", [*names, "check parity"], enabled=progress):
        records = run.to_fixed_point(model)
        optimized = _derive(art, model, [r.name for r in records])
        note_step("check parity")
        parity = _check(art, optimized, run, atol, rtol) if check else None
    report = OptimizationReport(tuple(records), parity, before, count_nodes(model.graph))
    return dataclasses.replace(optimized, parity=parity, report=report)


def _pipeline(passes: Sequence[str | CountingPass] | None, level: str) -> list[str | CountingPass]:
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}.")
    chosen: list[str | CountingPass] = list(DEFAULT_PASSES if passes is None else passes)
    if level == "none":
        chosen = []
    elif level in ORT_LEVELS:
        chosen.append(level)
    for item in chosen:
        if isinstance(item, str) and item not in PASSES and item not in ORT_LEVELS:
            valid = ", ".join([*PASSES, *ORT_LEVELS])
            raise ConfigError(f"unknown pass {item!r}; the passes are: {valid}.")
    return chosen


def _load_ir(art: Artifact) -> ir.Model:
    payload = require_onnx(art, "optimize")
    model = ir.load(payload.path) if payload.path else ir.from_proto(payload.model)
    if any(
        node.op_type in LOOP_AND_SEQUENCE_OPS
        for node in ir.traversal.RecursiveGraphIterator(model.graph)
    ):
        return model  # onnx's inference can mistype values in loops over sequences/optionals
    try:  # shapes let more rules prove their preconditions; a model without them still works
        ShapeInferencePass()(model)
    except Exception as err:  # onnx's shape inference rejects some valid custom-op models
        log.info("shape inference skipped for %s: %s", art.name, err)
    return model


@dataclasses.dataclass(frozen=True)
class _Runner:
    """Runs a pipeline on a model in place. With ``undo``, a pass that raises or breaks
    the growth ``limit`` is rolled back and reported as skipped (a library's bug must not
    cost the user the other passes); without it (models kept on disk), either raises."""

    pipeline: Sequence[str | CountingPass]
    undo: bool
    limit: GrowthLimit | None

    def to_fixed_point(self, model: ir.Model) -> list[PassRecord]:
        """Run the pipeline again while it still changes something (a fold can enable a
        fusion and vice versa), at most ``_ROUNDS`` times; one record per pass."""
        merged = last = self.once(model)
        for _ in range(_ROUNDS - 1):
            if not any(r.fired for r in last):
                break
            last = self.once(model)
            merged = [first.merge(later) for first, later in zip(merged, last, strict=True)]
        return merged

    def once(self, model: ir.Model, stop: int | None = None) -> list[PassRecord]:
        """Run the passes in order (the first ``stop`` of them)."""
        return [self._one(model, item) for item in self.pipeline[:stop]]

    def _one(self, model: ir.Model, item: str | CountingPass) -> PassRecord:
        name = item if isinstance(item, str) else item.name
        note_step(name)
        nodes = count_nodes(model.graph)
        started = time.perf_counter()
        snapshot = ir.to_proto(model) if self.undo else None
        try:
            fired = (
                _ort_pass(model, item)
                if isinstance(item, str) and item in ORT_LEVELS
                else _apply(model, PASSES[item]() if isinstance(item, str) else item)
            )
            problem = self.limit.breach(model) if self.limit is not None else None
        except Exception as err:
            if snapshot is None:
                raise _failed(name, f"failed on this model: {type(err).__name__}: {err}") from err
            fired, problem = {}, f"{type(err).__name__}: {err}"
        note = ""
        if problem is not None:
            if snapshot is None:
                raise _failed(name, f"was not kept: {problem}")
            fired, note = {}, self._roll_back(model, snapshot, name, problem)
        return PassRecord(name, fired, nodes, count_nodes(model.graph), _since(started), note)

    @staticmethod
    def _roll_back(model: ir.Model, snapshot: onnx.ModelProto, name: str, why: str) -> str:
        _replace_contents(model, ir.from_proto(snapshot))
        note = f"skipped, model left as it was: {why}"
        log.warning("optimize: pass %s %s", name, note)
        return note


def _failed(name: str, what: str) -> OptimizationError:
    return OptimizationError(
        f"pass '{name}' {what}. Leave it out with passes=[...] (the others: {', '.join(PASSES)}).",
        pass_name=name,
    )


def _since(started: float) -> float:
    return time.perf_counter() - started


def _apply(model: ir.Model, graph_pass: CountingPass) -> dict[str, int]:
    graph_pass.fired.clear()  # a pass object may run in several rounds
    graph_pass(model)
    return dict(graph_pass.fired)


def _ort_pass(model: ir.Model, level: str) -> dict[str, int]:
    """onnxruntime's offline optimizer, run on the model in place."""
    import onnxruntime as ort

    before = count_nodes(model.graph)
    with tempfile.TemporaryDirectory(prefix="nbdeploy-ort-") as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        ir.save(model, source)
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        optimized = ir.load(target)
        optimized.graph.name = model.graph.name
    _replace_contents(model, optimized)
    return {"nodes fused or removed": before - count_nodes(model.graph)}


def _replace_contents(model: ir.Model, other: ir.Model) -> None:
    model.graph = other.graph  # the opset imports live on the graph and come with it
    model.functions.clear()
    model.functions.update(other.functions)


def _derive(art: Artifact, model: ir.Model, names: list[str]) -> Artifact:
    """The optimized artifact, without its parity and report (not known yet)."""
    detail = {"passes": names}
    if art.onnx_path is None:
        return art.derive(ir.to_proto(model), step="optimize", detail=detail)
    with tempfile.TemporaryDirectory(prefix="nbdeploy-opt-") as tmp:  # past 2 GiB: via a file
        path = Path(tmp) / "model.onnx"
        ir.save(model, path, external_data="model.onnx.data")
        payload = OnnxPayload.adopt(path, onnx.load(path, load_external_data=False), move=True)
    return art.derive(payload, step="optimize", detail=detail)


def _check(art: Artifact, optimized: Artifact, run: _Runner, atol: float, rtol: float) -> Parity:
    feed = art.example if art.example is not None else random_feed(art.inputs)
    reference = art.run(feed)
    parity = _parity(optimized, feed, reference, atol, rtol)
    if parity.ok:
        return parity
    culprit = _bisect(art, run, feed, reference, atol, rtol)
    worst = parity.worst()
    assert worst is not None
    err = OptimizationError(
        f"optimizing '{art.name}' changed output '{worst.output}' by up to {worst.max_abs:.3g} "
        f"(atol {atol:g}, rtol {rtol:g}); pass '{culprit}' is responsible. Leave it out with "
        f"passes=[...], or loosen atol=/rtol= if the difference is acceptable.",
        pass_name=culprit,
        max_abs=worst.max_abs,
        artifact=art,
    )
    raise err


def _parity(
    candidate: Artifact,
    feed: Mapping[str, np.ndarray],
    reference: Mapping[str, Output],
    atol: float,
    rtol: float,
) -> Parity:
    try:
        got = candidate.run(feed)
    except NbDeployError as err:
        raise OptimizationError(
            f"the optimized '{candidate.name}' no longer runs: {err}", pass_name="(pipeline)"
        ) from err
    checks = compare_outputs(got, reference, batch_size=batch_size(feed), atol=atol, rtol=rtol)
    return Parity("the input artifact", atol, rtol, tuple(checks))


def _bisect(
    art: Artifact,
    run: _Runner,
    feed: Mapping[str, np.ndarray],
    reference: Mapping[str, Output],
    atol: float,
    rtol: float,
) -> str:
    """The first pass after which the answers differ (pipelines are short: linear scan)."""
    for stop in range(1, len(run.pipeline) + 1):
        model = _load_ir(art)
        records = dataclasses.replace(run, undo=True).once(model, stop)
        candidate = art.derive(ir.to_proto(model), step="optimize")
        try:
            ok = _parity(candidate, feed, reference, atol, rtol).ok
        except OptimizationError:
            ok = False
        if not ok:
            return records[-1].name
    return "(pipeline)"
