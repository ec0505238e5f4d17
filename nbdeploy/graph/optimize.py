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
        progress: ``False`` for silence; otherwise a line naming the pass running
            appears once the optimization has run a second.

    Raises:
        OptimizationError: A pass crashed or changed the answers (names the pass).
        ConfigError: An unknown pass name or level.
    """
    pipeline = _pipeline(passes, level)
    model = _load_ir(art)
    before = count_nodes(model.graph)
    names = [p if isinstance(p, str) else p.name for p in pipeline]
    with steps(f"optimize {art.name}", [*names, "check parity"], enabled=progress):
        records = _run_to_fixed_point(model, pipeline, undo=art.onnx_path is None)
        optimized = _derive(art, model, [r.name for r in records])
        note_step("check parity")
        parity = _check(art, optimized, pipeline, atol, rtol) if check else None
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


def _run_to_fixed_point(
    model: ir.Model, pipeline: Sequence[str | CountingPass], *, undo: bool
) -> list[PassRecord]:
    """Run the pipeline again while it still changes something (a fold can enable a
    fusion and vice versa), at most ``_ROUNDS`` times; one record per pass."""
    merged = last = _run(model, pipeline, undo=undo)
    for _ in range(_ROUNDS - 1):
        if not any(r.fired for r in last):
            break
        last = _run(model, pipeline, undo=undo)
        merged = [first.merge(later) for first, later in zip(merged, last, strict=True)]
    return merged


def _run(
    model: ir.Model, pipeline: Sequence[str | CountingPass], *, undo: bool
) -> list[PassRecord]:
    """Run the passes in order. With ``undo``, a pass that raises is rolled back and
    reported as skipped (a library's bug must not cost the user the other passes)."""
    records = []
    for item in pipeline:
        name = item if isinstance(item, str) else item.name
        note_step(name)
        nodes = count_nodes(model.graph)
        started = time.perf_counter()
        snapshot = ir.to_proto(model) if undo else None
        note = ""
        try:
            fired = (
                _ort_pass(model, item)
                if isinstance(item, str) and item in ORT_LEVELS
                else _apply(model, PASSES[item]() if isinstance(item, str) else item)
            )
        except Exception as err:
            if snapshot is None:
                raise OptimizationError(
                    f"pass '{name}' failed on this model: {type(err).__name__}: {err}. "
                    f"Leave it out with passes=[...] (the others: {', '.join(PASSES)}).",
                    pass_name=name,
                ) from err
            _replace_contents(model, ir.from_proto(snapshot))
            fired, note = {}, f"skipped, model left as it was: {type(err).__name__}: {err}"
            log.warning("optimize: pass %s %s", name, note)
        seconds = time.perf_counter() - started
        records.append(PassRecord(name, fired, nodes, count_nodes(model.graph), seconds, note))
    return records


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


def _check(
    art: Artifact,
    optimized: Artifact,
    pipeline: Sequence[str | CountingPass],
    atol: float,
    rtol: float,
) -> Parity:
    feed = art.example if art.example is not None else random_feed(art.inputs)
    reference = art.run(feed)
    parity = _parity(optimized, feed, reference, atol, rtol)
    if parity.ok:
        return parity
    culprit = _bisect(art, pipeline, feed, reference, atol, rtol)
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
    pipeline: Sequence[str | CountingPass],
    feed: Mapping[str, np.ndarray],
    reference: Mapping[str, Output],
    atol: float,
    rtol: float,
) -> str:
    """The first pass after which the answers differ (pipelines are short: linear scan)."""
    for stop in range(1, len(pipeline) + 1):
        model = _load_ir(art)
        records = _run(model, pipeline[:stop], undo=True)
        candidate = art.derive(ir.to_proto(model), step="optimize")
        try:
            ok = _parity(candidate, feed, reference, atol, rtol).ok
        except OptimizationError:
            ok = False
        if not ok:
            return records[-1].name
    return "(pipeline)"
