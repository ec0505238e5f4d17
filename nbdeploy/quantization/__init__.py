"""``nbd.quantize``: every scheme returns a new artifact with a per-weight error report.

The maths lives in :mod:`.maths`; onnxruntime's quantizer only in :mod:`.ort_adapter`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import external_data_helper

from .. import _onnxio
from .._progress import detail, steps
from ..artifact import Artifact, require_onnx
from ..bench.metrics import MetricFn
from ..errors import ConfigError
from ..payloads import OnnxPayload
from . import budget, dynamic, int4_matmul, ort_adapter
from .budget import Budget, BudgetReport
from .calibration import batches
from .report import Origin, QuantizationReport, onnxruntime_errors
from .schemes import (
    CalibrationMethod,
    Float16,
    Int4Dynamic,
    Int4MatMul,
    Int8Dynamic,
    Int8Static,
    KMeans,
    Scheme,
    WeightOnly,
    parse_scheme,
)
from .store import DiskStore, MemoryStore, Store, rewrite
from .weights import TensorError, error_of, quantize_weights

__all__ = [
    "BudgetReport",
    "CalibrationMethod",
    "QuantizationReport",
    "Scheme",
    "parse_scheme",
    "quantize",
]

# onnxruntime session entries a scheme's models run best with, by scheme. Weight-only:
# onnxruntime keeps DequantizeLinear nodes for QDQ fusion and runs them on every call
# (measured 2.5x slower on the digits CNN); treating them as plain ops lets it fold the
# weights once at load, as fast as fp32.
# int4-dynamic: onnxruntime 1.32's QDQ propagation, at opset 21, rewrites a
# DynamicQuantizeLinear after a Transpose into a QuantizeLinear whose output type does not
# match its zero point, and the session fails to load (the tiny transformer); without the
# QDQ transformers it loads, folds the INT4 → int8 Casts and fuses DynamicQuantizeMatMul.
_SESSION_CONFIG: dict[type[Scheme], Mapping[str, str]] = {
    WeightOnly: {"session.disable_quant_qdq": "1"},
    Int4Dynamic: {"session.disable_quant_qdq": "1"},
}


def quantize(
    art: Artifact,
    scheme: str | Scheme,
    *,
    calibration: Any = None,
    per_channel: bool = True,
    exclude: Iterable[str] | None = None,
    method: str | CalibrationMethod | None = None,
    max_drop: float | None = None,
    data: Any = None,
    metric: str | MetricFn = "accuracy",
    progress: bool | None = None,
) -> Artifact:
    """Quantize an ONNX artifact; the result's ``.report`` says where the error went.

    With ``max_drop``, quantization meets an accuracy budget by itself: it quantizes,
    scores the result on ``data``, and while the drop exceeds the budget, keeps the nodes
    doing the most damage (ranked by :func:`nbdeploy.activations`) in float, a growing
    group at a time; ``.report.budget`` lists every attempt, what stayed float, and what
    that cost in size and latency.

    A model kept on disk (256 MiB of weights or more) is quantized a weight at a time,
    never whole in memory: int8-dynamic then takes its MatMul, Gemm and Gather weights
    (where large models keep theirs) in onnxruntime's node pattern, where onnxruntime's
    quantizer, used for smaller models, also takes convolutions and recurrent layers.

    Args:
        art: The artifact (unchanged).
        scheme: ``"int8-dynamic"``, ``"int8-static"``, ``"fp16"``,
            ``"int8-weight-symmetric"``, ``"int8-weight-asymmetric"`` (or ``int4-…``, and
            ``int4-weight-symmetric-b32`` for one scale per block of 32 inputs),
            ``"kmeans-<k>"``, ``"int4-dynamic"`` (int8-dynamic's ``MatMulInteger`` with
            4-bit MatMul/Gemm weights stored packed, cast to int8 when a session loads:
            a 4-bit file at int8-dynamic's speed), ``"int4-matmul"`` (onnxruntime's
            4-bit ``MatMulNBits`` for
            transformers' MatMul/Gemm weights and Gather embeddings; ``-b64``, ``-asym``,
            ``-acc4`` or :class:`~nbdeploy.quantization.schemes.Int4MatMul` for its
            settings); or a scheme config object. Storage: 8-bit weights as
            INT8/UINT8; 3- and 4-bit weights, and k-means indices for k ≤ 16, packed two
            to a byte as ONNX INT4/UINT4 (opset 21); 2-bit ones and indices for k ≤ 4
            four to a byte as INT2/UINT2 (opset 25). onnx's version converter raises the
            model's opset for them. onnxruntime folds the dequantizing nodes into float
            weights when a session loads, so inference runs at fp32 speed.
        calibration: For ``int8-static``: an array, a tuple/dict of arrays, or an
            iterable of batches of those.
        per_channel: One scale per output channel (default) or per tensor.
        exclude: Node names (and, for weight-only schemes, weight names) to leave alone.
        method: For ``int8-static``: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        max_drop: The largest drop of ``metric`` allowed (points for ``"accuracy"``,
            the data's units for ``"mse"``); needs ``data``. When even keeping every
            noisy node in float misses it, a warning says so and the attempt with the
            smallest drop is returned.
        data: ``(x_val, y_val)`` that ``max_drop`` is measured on (better not the
            calibration data).
        metric: As in :func:`nbdeploy.compare`: ``"accuracy"``, ``"top5"``, ``"mse"``,
            ``"mae"`` or a ``(y_true, y_pred) -> float`` (higher is better).
        progress: ``False`` for silence; otherwise a line naming the step (quantize,
            measure) appears once quantization has run a second.

    Raises:
        ConfigError: Unknown scheme or method, a model these schemes cannot take, or
            ``max_drop`` without labelled ``data``.
        ExampleError: Missing or ill-shaped calibration (or budget) data.
    """
    config = parse_scheme(scheme)
    if method is not None:
        if not isinstance(config, Int8Static):
            raise ConfigError(f"method= applies to int8-static only, not {config.name}.")
        config = Int8Static(_method(method))
    require_onnx(art, "quantize")
    skip = list(exclude or ())
    if max_drop is None:
        if data is not None:
            raise ConfigError("data= is what max_drop= is measured on: pass both, or neither.")
        return _quantize(art, config, calibration, per_channel, skip, progress)
    target = Budget.of(max_drop, data, metric, art)

    def excluding(nodes: list[str]) -> Artifact:
        return _quantize(art, config, calibration, per_channel, [*skip, *nodes], False)

    return budget.meet(art, excluding, target, progress=progress)


def _quantize(
    art: Artifact,
    config: Scheme,
    calibration: Any,
    per_channel: bool,
    skip: list[str],
    progress: bool | None,
) -> Artifact:
    """One quantization of ``art`` with ``config``, with its report."""
    payload = require_onnx(art, "quantize")
    with steps(f"quantize {art.name}", [config.name, "measure the change"],
               enabled=progress) as job:  # fmt: skip
        job.step(config.name)
        outcome = _int4_matmul(payload, config, skip) if isinstance(config, Int4MatMul) else None
        model, tensors = (
            (outcome.model, outcome.errors) if outcome
            else _apply(payload, config, art, calibration, per_channel, skip)
        )  # fmt: skip
        quantized = art.derive(
            model,
            step="quantize",
            detail={"scheme": config.name, "per_channel": per_channel, "exclude": skip},
            session_config={**art.session_config, **_SESSION_CONFIG.get(type(config), {})},
        )
        job.step("measure the change")
        # Quantization changes answers by design: the parity is measured, never enforced.
        parity = quantized.parity_against(
            art, reference="the unquantized input", atol=0.05, rtol=0.05
        )
    settings: dict[str, Any] = {"per_channel": per_channel}
    if isinstance(config, Int8Static):
        settings["method"] = config.method.value
    if isinstance(config, WeightOnly):
        settings["bits"] = config.bits
        if config.block_size is not None:
            settings["block_size"] = config.block_size
    if isinstance(config, Int4MatMul):
        settings = {"bits": 4, **dataclasses.asdict(config)}
    if isinstance(config, Int4Dynamic):
        settings["bits"] = 4
    report = QuantizationReport(
        config.name,
        settings,
        tuple(tensors),
        art.size_bytes,
        quantized.size_bytes,
        {c.output: c.max_abs for c in parity.checks},
        rewritten=outcome.rewritten if outcome else {},
        kept_float=outcome.kept if outcome else {},
        source=Origin(art, quantized),
    )
    return dataclasses.replace(quantized, parity=parity, report=report)


def _sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    """Nodes of the main graph in topological order, as the ONNX spec requires
    (onnxruntime's fp16 converter appends the Cast nodes it inserts at the end).

    Reorders the node list in place: the weights (initializers) are not touched, where
    a round trip through onnx-ir would copy every one of them twice."""
    order = _onnxio.topological_order(model.graph)
    if order != list(range(len(order))):
        nodes = [onnx.NodeProto() for _ in order]
        for node, index in zip(nodes, order, strict=True):
            node.CopyFrom(model.graph.node[index])
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return model


def _apply(
    payload: OnnxPayload,
    config: Scheme,
    art: Artifact,
    calibration: Any,
    per_channel: bool,
    exclude: list[str],
) -> tuple[onnx.ModelProto | OnnxPayload, list[TensorError]]:
    """Quantize the artifact's model (never changed: the schemes rewrite a copy, and a
    model kept on disk is read and written one weight at a time, never whole)."""
    on_disk = payload.path is not None
    if isinstance(config, Int8Static) or (isinstance(config, Int8Dynamic) and not on_disk):
        return _with_onnxruntime(payload, config, art, calibration, per_channel, exclude)
    weight_only = isinstance(config, WeightOnly | KMeans)
    if weight_only and per_channel and _onnxio.opset(payload.model) < 13:
        raise ConfigError("per-channel DequantizeLinear needs opset ≥ 13: export with opset=17.")

    def change(model: onnx.ModelProto, store: Store) -> list[TensorError]:
        if isinstance(config, Int8Dynamic | Int4Dynamic):
            bits = 4 if isinstance(config, Int4Dynamic) else 8
            return dynamic.int8_dynamic(model, store, per_channel=per_channel, exclude=exclude,
                                        bits=bits)  # fmt: skip
        if isinstance(config, Float16):
            return _float16(model, store, payload.model, exclude)
        assert isinstance(config, WeightOnly | KMeans)
        return quantize_weights(model, config, store, per_channel=per_channel, exclude=exclude)

    return rewrite(payload, change)


def _float16(
    model: onnx.ModelProto, store: Store, original: onnx.ModelProto, exclude: list[str]
) -> list[TensorError]:
    """onnxruntime's float16 conversion of ``model`` (in place); the weights it converted
    in type only (those in external data) are converted here, one at a time."""
    converted = ort_adapter.float16(model, exclude=exclude)
    if converted is not model:
        model.CopyFrom(converted)
    _sorted(model)
    floats = onnx.TensorProto.FLOAT
    before = {t.name: t for t in original.graph.initializer if t.data_type == floats}
    errors = []
    for number, tensor in enumerate(model.graph.initializer, 1):
        source = before.get(tensor.name)
        if source is None or tensor.data_type != onnx.TensorProto.FLOAT16:
            continue
        detail(f"tensor {number} of {len(model.graph.initializer)}")
        weight = store.read(source)
        if external_data_helper.uses_external_data(tensor):  # its type changed, not its data
            half = ort_adapter.to_float16(weight)
            tensor.CopyFrom(store.put(half, tensor.name))
        else:
            half = store.read(tensor)
        if weight.ndim >= 2:
            errors.append(error_of(tensor.name, weight, half.astype(np.float32)))
    return errors


def _with_onnxruntime(
    payload: OnnxPayload,
    config: Int8Dynamic | Int8Static,
    art: Artifact,
    calibration: Any,
    per_channel: bool,
    exclude: list[str],
) -> tuple[onnx.ModelProto | OnnxPayload, list[TensorError]]:
    source = payload.path or payload.model
    with tempfile.TemporaryDirectory(prefix="nbdeploy-quantized-") as tmp:
        target = Path(tmp) / _onnxio.MODEL_FILE
        if isinstance(config, Int8Dynamic):
            ort_adapter.int8_dynamic(source, target, per_channel=per_channel, exclude=exclude)
        else:
            feeds = batches(calibration, art.inputs)
            ort_adapter.int8_static(source, target, feeds, config, per_channel=per_channel,
                                    exclude=exclude)  # fmt: skip
        graph = onnx.load(target, load_external_data=False)
        written = sum(f.stat().st_size for f in target.parent.iterdir())
        if written >= _onnxio.ON_DISK_BYTES:
            out = OnnxPayload.adopt(target, graph, move=True)
            return out, []  # per-weight errors would load both models whole
        model = onnx.load(target)
    original = payload.whole() if payload.path is not None else payload.model
    return model, onnxruntime_errors(original, model)


def _int4_matmul(
    payload: OnnxPayload, config: Int4MatMul, exclude: list[str]
) -> int4_matmul.Outcome:
    """onnxruntime's MatMulNBits quantizer works on a model in memory: one kept on disk
    is read whole once (its 4-bit result, ~1/6 of it, goes back to disk if still large),
    and the errors read its float weights one at a time from its files."""
    if payload.path is None:
        model = onnx.ModelProto()
        model.CopyFrom(payload.model)
        return int4_matmul.int4_matmul(model, payload.model, MemoryStore().read, config, exclude)
    store = DiskStore(payload.path)
    try:
        return int4_matmul.int4_matmul(payload.whole(), payload.model, store.read, config, exclude)
    finally:
        store.discard()  # it wrote nothing


def _method(method: str | CalibrationMethod) -> CalibrationMethod:
    if isinstance(method, CalibrationMethod):
        return method
    try:
        return CalibrationMethod(method.lower())
    except ValueError as err:
        valid = ", ".join(m.value for m in CalibrationMethod)
        raise ConfigError(f"unknown calibration method {method!r}; choose {valid}.") from err
