"""``nbd.activations(torch_module, art)``: where an export first answers differently from
its PyTorch source, module by module.

Each submodule's output is captured with a forward hook; its ONNX counterpart is the
output of the last node (in topological order) that the dynamo exporter recorded inside
that module's name scope (``pkg.torch.onnx.name_scopes`` node metadata).
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from .. import _onnxio
from ..artifact import Artifact
from ..errors import ConfigError
from .activation_match import Found, Nodes, drift, own
from .activation_report import ActivationReport, TensorDrift, Unmatched

if TYPE_CHECKING:
    import torch

SCOPES = "pkg.torch.onnx.name_scopes"


def export_activations(
    module: torch.nn.Module,
    art: Artifact,
    feed: Mapping[str, np.ndarray],
    source: str,
    threshold_db: float,
) -> ActivationReport:
    """See :func:`nbdeploy.activations` (a torch module as the reference)."""
    from .activations import _Probe

    scoped = module_tensors(art.onnx.graph)
    if not scoped:
        raise ConfigError(
            f"'{art.variant}' carries no PyTorch name scopes (it was not exported by "
            f"torch's dynamo exporter, or a later step dropped them); compare it with "
            f"nbd.activations(export, art) instead."
        )
    outputs = module_outputs(module, feed)
    probe = _Probe.of(art)
    wanted = [t for _, t in scoped.values() if t in probe.floats]
    got = probe.fetch(list(dict.fromkeys(wanted)), feed)
    graph = art.onnx.graph
    depth = {n: d for d, i in enumerate(_onnxio.topological_order(graph))
             for n in [graph.node[i].name]}  # fmt: skip
    nodes: Nodes = {}
    drifts: list[TensorDrift] = []
    unmatched: list[Unmatched] = []
    for name, (node, tensor) in sorted(scoped.items(), key=lambda kv: depth[kv[1][0]]):
        kind = type(module.get_submodule(name)).__name__
        nodes[name] = (node, kind, depth[node], [])
        value, want = got.get(tensor), outputs.get(name)
        if want is None or value is None or value.shape != want.shape:
            why = _why(name, want, value, tensor)
            unmatched.append(Unmatched(name, node, why))
            continue
        drifts.append(drift(name, nodes, want, Found(tensor, value, "scope", None, tensor), None))
    rows = _rows(feed)
    return ActivationReport(type(module).__name__, art.variant, f"{source}, {rows} rows",
                            threshold_db, tuple(own(drifts, nodes)), tuple(unmatched))  # fmt: skip


def module_tensors(graph: onnx.GraphProto) -> dict[str, tuple[str, str]]:
    """Per submodule name, the last node (topologically) inside its scope and that
    node's first output: what the module returned, as the exporter wrote it."""
    last: dict[str, tuple[str, str]] = {}
    for index in _onnxio.topological_order(graph):
        node = graph.node[index]
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
        if scopes is None or not node.output:
            continue
        for scope in _parse(scopes)[:-1]:  # the last entry names the node itself
            if scope:
                last[scope] = (node.name, node.output[0])
    return last


def module_outputs(module: torch.nn.Module, feed: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per submodule called once, its output tensor as numpy (positional inputs in the
    artifact's input order)."""
    import torch

    seen: dict[str, list[Any]] = {}

    def keep(name: str) -> Any:
        return lambda _module, _inputs, out: seen.setdefault(name, []).append(out)

    hooks = [sub.register_forward_hook(keep(name)) for name, sub in module.named_modules() if name]
    try:
        with torch.no_grad(), _eval(module):
            module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: outs[0].detach().cpu().numpy() for name, outs in seen.items()
            if len(outs) == 1 and isinstance(outs[0], torch.Tensor)}  # fmt: skip


@contextlib.contextmanager
def _eval(module: torch.nn.Module) -> Iterator[None]:
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)


def _parse(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _why(name: str, want: Any, value: Any, tensor: str) -> str:
    if want is None:
        return "the module ran more than once or returned no single tensor"
    if value is None:
        return f"{tensor} is not a float output of the ONNX model"
    return f"shape {want.shape} in torch, {value.shape} in ONNX"


def _rows(feed: Mapping[str, np.ndarray]) -> int:
    return next((int(v.shape[0]) for v in feed.values() if v.ndim), 1)
