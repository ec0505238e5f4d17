"""``nbd.activations``: where in the network a variant's answers drift from its
reference, tensor by tensor (onnxruntime's ``qdq_loss_debug`` idea, for any two ONNX
variants: optimized, quantized int8/fp16/weight-only, ...)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from .. import _onnxio
from .._feed import as_feed, random_feed
from ..artifact import Artifact, require_onnx
from ..errors import ArtifactError, ConfigError
from .activation_match import (
    Nodes,
    drift,
    fused_into,
    names,
    own,
    pair,
    qdq_matching,
    why_unmatched,
)  # fmt: skip
from .activation_report import ActivationReport, TensorDrift, Unmatched

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

__all__ = ["ActivationReport", "activations"]

_FLOATS = {"tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)"}


def activations(
    reference: Artifact | torch.nn.Module,
    variant: Artifact,
    data: Any = None,
    *,
    rows: int = 8,
    per_run: int = 32,
    threshold_db: float = 30.0,
) -> ActivationReport:
    """Compare every intermediate tensor of ``variant`` with ``reference``'s.

    Both models run in onnxruntime with graph optimizations off (as onnxruntime's
    ``qdq_loss_debug`` runs them), every node output made a graph output, so a QDQ model
    computes in float what its int8 kernels would; the final outputs can differ from a
    normal run by a rounding step. Tensors are matched by name; for QDQ models a
    tensor's dequantized copy stands for it (onnxruntime's ``create_activation_matching``);
    those a rewrite fused or renamed away are listed as unmatched, with the reason.
    Only the main graph's tensors are compared (not those inside If/Loop bodies).

    With a PyTorch module as the reference (the one ``variant`` was exported from by
    torch's dynamo exporter), each submodule's output, caught by a forward hook, is
    compared with the last ONNX node the exporter recorded in that module's name scope:
    "the outputs first differ at encoder.layer.3.attention". Pass
    ``threshold_db=math.inf`` to find the first module not equal within float tolerance.

    Memory: fetching every intermediate tensor at once can take many times a model's
    weights, so only the first ``rows`` rows of the data run, and tensors are fetched
    ``per_run`` at a time (one run of both models per group); raise them for more.

    Args:
        reference: The artifact to compare against (e.g. the float model), or the
            ``torch.nn.Module`` that ``variant`` was exported from.
        variant: The artifact compared (e.g. ``nbd.quantize(reference, "int8-static")``).
        data: Inputs (an array, a tuple or dict of arrays); the reference's stored
            example, else the variant's, else random inputs of the right shape.
        rows: Rows of the data to run (the first ones).
        per_run: Intermediate tensors fetched per run (between two artifacts; a
            module's export is fetched at once, one tensor per submodule).
        threshold_db: SQNR below which a tensor counts as diverged: the first such,
            in topological order, is the report's ``first_divergence``.

    Returns:
        An :class:`ActivationReport`: ``str()``, HTML in Jupyter, ``to_dict()``,
        ``.plot()``, ``.worst(n)`` (the nodes doing the most damage).

    Raises:
        ConfigError: An artifact is not ONNX, the two take different inputs,
            ``rows``/``per_run`` are below 1, or a module's export carries no name
            scopes (another exporter than dynamo).
        ExampleError: ``data`` does not fit the models' inputs.
        ArtifactError: onnxruntime cannot load or run a model.
    """
    if rows < 1 or per_run < 1:
        raise ConfigError("rows= and per_run= must be at least 1.")
    if not isinstance(reference, Artifact):
        return _from_torch(reference, variant, data, rows, threshold_db)
    hint = "activations compares two ONNX artifacts; export with format='onnx'."
    require_onnx(reference, "activations", hint=hint)
    require_onnx(variant, "activations", hint=hint)
    if _signature(reference) != _signature(variant):
        raise ConfigError(
            f"'{reference.variant}' and '{variant.variant}' take different inputs; compare "
            f"a model with one derived from it (optimize, quantize)."
        )
    feed, source = _feed(reference, variant, data, rows)
    ref, var = _Probe.of(reference), _Probe.of(variant)
    nodes = _nodes(reference.onnx.graph)
    drifts: list[TensorDrift] = []
    unmatched: list[Unmatched] = []
    for chunk in _chunks([t for t in nodes if t in ref.types], per_run):
        want = ref.fetch(chunk, feed)
        got = var.fetch([n for t in chunk for n in names(t) if n in var.floats], feed)
        matched = qdq_matching(got, want)
        for tensor in chunk:
            found = pair(tensor, got, matched)
            why = why_unmatched(tensor, found, want[tensor], var.types)
            if why or found is None:
                unmatched.append(Unmatched(tensor, nodes[tensor][0], why))
                continue
            fused = fused_into(nodes, tensor, var.makers.get(found.made_as))
            drifts.append(drift(tensor, nodes, want[tensor], found, fused))
    with_own = own(drifts, nodes)
    folded = {d.fused_with: d.tensor for d in drifts if d.fused_with}
    unmatched = [replace(u, reason=f"its node was folded into the one making {folded[u.node]}")
                 if u.node in folded else u for u in unmatched]  # fmt: skip
    return ActivationReport(reference.variant, variant.variant, f"{source}, {_rows(feed)} rows",
                            threshold_db, tuple(with_own), tuple(unmatched))  # fmt: skip


@dataclass(frozen=True)
class _Probe:
    """An artifact's model with every node output as a graph output, in one session."""

    session: ort.InferenceSession
    types: dict[str, str]
    makers: dict[str, str]  # tensor -> the operator that writes it

    @classmethod
    def of(cls, art: Artifact) -> _Probe:
        import onnxruntime as ort

        payload = require_onnx(art, "activations")
        model = onnx.ModelProto()
        model.CopyFrom(payload.model)  # for a model kept on disk, its graph only
        declared = {o.name for o in model.graph.output}
        extra = [t for node in model.graph.node if node.op_type != "Constant"
                 for t in node.output if t and t not in declared]  # fmt: skip
        # onnxruntime infers the type of an output declared by name only.
        model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in dict.fromkeys(extra))
        options = art.session_options()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if payload.folder is not None:  # its weights stay in the payload's folder
            options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(payload.folder)
            )
        try:
            session = ort.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])  # fmt: skip
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"'{art.variant}': onnxruntime cannot load it: {err}") from err
        makers = {t: node.op_type for node in model.graph.node for t in node.output}
        return cls(session, {o.name: o.type for o in session.get_outputs()}, makers)

    @property
    def floats(self) -> set[str]:
        """Outputs of a floating-point type."""
        return {name for name, kind in self.types.items() if kind in _FLOATS}

    def fetch(self, names: list[str], feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The values of ``names`` on ``feed``."""
        if not names:
            return {}
        try:
            values = self.session.run(names, dict(feed))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"onnxruntime could not run the model: {err}") from err
        return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}


def _from_torch(
    module: Any, art: Artifact, data: Any, rows: int, threshold_db: float
) -> ActivationReport:
    if not hasattr(module, "named_modules"):
        raise ConfigError(
            f"activations compares an artifact with another or with the torch.nn.Module it "
            f"was exported from, not a {type(module).__name__}."
        )
    from .export_activations import export_activations

    require_onnx(art, "activations")
    feed, source = _feed(art, art, data, rows)
    return export_activations(module, art, feed, source, threshold_db)


def _feed(
    reference: Artifact, variant: Artifact, data: Any, rows: int
) -> tuple[dict[str, np.ndarray], str]:
    if data is not None:
        feed, source = as_feed(data, reference.inputs), "data"
    elif reference.example is not None:
        feed, source = reference.example, "example"
    elif variant.example is not None:
        feed, source = variant.example, "example"
    else:
        feed, source = random_feed(reference.inputs), "random inputs"
    return {k: v[:rows] if v.ndim else v for k, v in feed.items()}, source


def _signature(art: Artifact) -> list[tuple[str, str, int]]:
    return [(s.name, s.dtype, len(s.shape)) for s in art.inputs]


def _rows(feed: Mapping[str, np.ndarray]) -> int:
    return next((int(v.shape[0]) for v in feed.values() if v.ndim), 1)


def _nodes(graph: onnx.GraphProto) -> Nodes:
    """Per tensor a node makes (Constants aside), in topological order: the node's name
    (``op#index`` when it has none), operator, depth and inputs."""
    made: Nodes = {}
    for depth, index in enumerate(_onnxio.topological_order(graph)):
        node = graph.node[index]
        if node.op_type == "Constant":
            continue
        name = node.name or f"{node.op_type}#{index}"
        for tensor in node.output:
            if tensor:
                made[tensor] = (name, node.op_type, depth, list(node.input))
    return made


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
