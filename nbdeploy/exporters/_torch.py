"""PyTorch ``nn.Module`` → ONNX (dynamo exporter, TorchScript-based fallback) or TorchScript."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _onnxio, _torchscript
from .._deps import require
from .._torchscript import flatten_outputs
from ..artifact import Artifact
from ..errors import ExampleError, ExportError
from ..payloads import OnnxPayload, TorchScriptPayload
from ..provenance import Lineage
from ..types import BATCH, Outputs, TensorSpec
from . import _decoders
from ._options import ExportOptions
from ._parity import grow_batch, verify
from ._quiet import quiet
from .report import ExportReport

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
Feed = dict[str, np.ndarray]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OP = re.compile(r"(aten[:.]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")


def export(model: Any, example: Any, options: ExportOptions) -> Artifact:
    """Export a torch module; see :func:`nbdeploy.export`."""
    torch = require("torch", extra="torch", feature="Exporting a PyTorch model")
    call = _Call.from_example(model, example)
    lineage = Lineage("torch", torch.__version__, _qualname(model))
    model, lineage = _decoders.prepare(model, call, lineage)  # may change the call
    feed = call.feed
    with _eval_mode(model), torch.no_grad():
        reference = call.reference(model)
        output_names = list(reference(feed))
        trace_feed = grow_batch(feed) if options.dynamic_batch and call.batch == 1 else feed
        if options.format == "torchscript":
            art = _to_torchscript(model, call, trace_feed, output_names, lineage, options)
        else:
            art = _to_onnx(model, call, trace_feed, output_names, lineage, options)
        parity = verify(
            art,
            reference,
            feed,
            reference_name=f"torch {torch.__version__}",
            dynamic_batch=options.dynamic_batch,
            atol=options.atol,
            rtol=options.rtol,
        )
    return dataclasses.replace(art, parity=parity, report=ExportReport.of(art.lineage, parity))


def source_reference(model: Any, example: Any) -> Callable[[Feed], Outputs]:
    """Run the module itself (in eval mode, without gradients) on a feed, its results
    named like an export's outputs (for checks after later steps)."""
    torch = require("torch", extra="torch", feature="Running a PyTorch model")
    reference = _Call.from_example(model, example).reference(model)

    def run(feed: Feed) -> Outputs:
        with _eval_mode(model), torch.no_grad():
            return reference(feed)

    return run


class _Call:
    """How the model is called: positional tensors or keyword tensors, and their names."""

    def __init__(self, names: list[str], feed: Feed, keyword: bool) -> None:
        self.names, self.feed, self.keyword = names, feed, keyword
        # Dynamic dimensions past the batch, by input: {name: {axis: dimension name}}
        # (a decoder's sequence and its cache's past sequence).
        self.axes: dict[str, dict[int, str]] = {}
        self.batch = next((int(v.shape[0]) for v in feed.values() if v.ndim), 1)

    @classmethod
    def from_example(cls, model: Any, example: Any) -> _Call:
        if example is None:
            raise ExampleError(
                "a PyTorch model is exported by running it: pass example= a batch of inputs "
                "(a tensor, a tuple of tensors, or a dict of keyword tensors)."
            )
        if isinstance(example, Mapping):
            return cls(list(example), {k: _to_numpy(k, v) for k, v in example.items()}, True)
        values = list(example) if isinstance(example, tuple | list) else [example]
        names = _positional_names(model, len(values))
        return cls(names, {n: _to_numpy(n, v) for n, v in zip(names, values, strict=True)}, False)

    def tensors(self, feed: Feed) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        return _torchscript.tensors(feed, keyword=self.keyword)

    def reference(self, model: Any) -> Callable[[Feed], Outputs]:
        def run(feed: Feed) -> Outputs:
            args, kwargs = self.tensors(feed)
            try:
                result = model(*args, **kwargs)
            except Exception as err:
                shapes = {k: (tuple(v.shape), str(v.dtype)) for k, v in feed.items()}
                raise ExampleError(
                    f"the model raised {type(err).__name__} on the example {shapes}: {err}. "
                    "Pass an example the model accepts (check shape, dtype and argument names)."
                ) from err
            return flatten_outputs(result)

        return run


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return value
    raise ExampleError(
        f"example input '{name}' is a {type(value).__name__}; pass torch tensors or numpy arrays."
    )


def _positional_names(model: Any, count: int) -> list[str]:
    try:
        params = inspect.signature(model.forward).parameters.values()
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # scripted modules, C++ extensions
        names = []
    if len(names) < count:
        names = [f"input_{i}" for i in range(count)]
    return names[:count]


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Export in inference mode, then give the user's model back as it was."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _to_onnx(
    model: Any,
    call: _Call,
    feed: Feed,
    output_names: list[str],
    lineage: Lineage,
    options: ExportOptions,
) -> Artifact:
    import onnx
    import torch

    args, kwargs = call.tensors(feed)
    batch = torch.export.Dim(BATCH)
    name, opset, dynamic_batch = options.name, options.opset, options.dynamic_batch
    shapes = _dynamic_shapes(call, feed, batch if dynamic_batch else None)
    large = _weight_bytes(model) >= _onnxio.ON_DISK_BYTES
    with tempfile.TemporaryDirectory(prefix="nbdeploy-export-") as tmp:
        path = Path(tmp) / _onnxio.MODEL_FILE
        try:
            with quiet("torch.onnx"):
                program = torch.onnx.export(
                    model,
                    args,
                    kwargs=kwargs,
                    dynamo=True,
                    dynamic_shapes=shapes,
                    input_names=call.names if not call.keyword else None,
                    output_names=output_names,
                    opset_version=opset,
                    optimize=options.exporter_optimize,
                    verbose=False,
                )
                assert program is not None  # dynamo=True always returns a program
                if large:  # past 2 GiB there is no in-memory proto: go through a file
                    program.save(str(path), external_data=True)
                else:
                    proto = program.model_proto
            step: dict[str, object] = {"exporter": "dynamo"}
        except Exception as dynamo_err:
            reason = _first_line(dynamo_err)
            log.info(
                "dynamo export of %s failed (%s); trying the TorchScript-based exporter",
                name,
                reason,
            )
            _legacy_onnx(model, call, feed, output_names, opset, dynamic_batch, dynamo_err, path,
                         lineage)  # fmt: skip
            large, step = True, {"exporter": "torchscript", "dynamo_failed": reason}
        if large:
            proto = onnx.load(path, load_external_data=False)
        step |= {
            "opset": _onnxio.opset(proto),
            "dynamic_batch": dynamic_batch,
            "call": _style(call),
        }
        lineage = lineage.then("export", **step)
        if large:
            _onnxio.check(proto, path)
            payload = OnnxPayload.adopt(path, proto, move=True)
            return Artifact.from_onnx(payload, name=name, lineage=lineage, example=call.feed)
    onnx.checker.check_model(proto)
    return Artifact.from_onnx(proto, name=name, lineage=lineage, example=call.feed)


def _dynamic_shapes(call: _Call, feed: Feed, batch: Any) -> Any:
    """Which dimensions vary: the batch (``batch``, unless ``None``) and the ones
    ``call.axes`` names, one ``torch.export.Dim`` per name; by input name for a keyword
    call, in argument order for a positional one."""
    import torch

    named = {dim: torch.export.Dim(dim) for axes in call.axes.values() for dim in axes.values()}
    shapes: dict[str, dict[int, Any]] = {}
    for name, value in feed.items():
        dims = {0: batch} if batch is not None and value.ndim else {}
        dims |= {axis: named[dim] for axis, dim in call.axes.get(name, {}).items()}
        shapes[name] = dims
    if not any(shapes.values()):
        return None
    return shapes if call.keyword else tuple(shapes[name] for name in call.names)


def _weight_bytes(model: Any) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(int(t.numel()) * int(t.element_size()) for t in tensors)


def _legacy_onnx(
    model: Any,
    call: _Call,
    feed: Feed,
    output_names: list[str],
    opset: int | None,
    dynamic_batch: bool,
    dynamo_err: Exception,
    path: Path,
    lineage: Lineage,
) -> None:
    import torch

    args, kwargs = call.tensors(feed)
    axes = {n: {0: BATCH} for n in [*call.names, *output_names]} if dynamic_batch else None
    try:
        with quiet("torch.onnx"):
            torch.onnx.export(
                model,
                (*args, kwargs) if kwargs else args,
                str(path),
                dynamo=False,
                input_names=call.names,
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset or 17,
            )
    except Exception as err:
        op = _operator(err) or _operator(dynamo_err)
        raise ExportError(
            f"neither torch exporter could convert {lineage.model_class}"
            + (f" (failing operator: {op})" if op else "")
            + f". dynamo: {_first_line(dynamo_err)} | torchscript: {_first_line(err)}. "
            + (
                _decoders.hint(lineage)
                or "Try another opset=, rewrite the failing operation, or export "
                "format='torchscript'."
            ),
            operator=op,
        ) from err


def _to_torchscript(
    model: Any,
    call: _Call,
    feed: Feed,
    output_names: list[str],
    lineage: Lineage,
    options: ExportOptions,
) -> Artifact:
    import torch

    args, kwargs = call.tensors(feed)
    script = options.script
    try:
        with quiet("torch.onnx"):
            if script:
                compiled = torch.jit.script(model)
            else:
                compiled = torch.jit.trace(  # type: ignore[no-untyped-call]
                    model,
                    example_inputs=args or None,
                    example_kwarg_inputs=kwargs or None,
                    strict=False,
                )
    except Exception as err:
        how = "script" if script else "trace"
        raise ExportError(
            f"torch.jit.{how} could not compile {_qualname(model)}: {_first_line(err)}. "
            + ("Try script=False (tracing)." if script else "Try script=True, or format='onnx'."),
            operator=_operator(err),
        ) from err
    buffer = io.BytesIO()
    torch.jit.save(compiled, buffer)
    outs = call.reference(model)(feed)
    return Artifact(
        name=options.name,
        payload=TorchScriptPayload(buffer.getvalue(), keyword=call.keyword),
        inputs=tuple(TensorSpec(k, str(v.dtype), _batched(v)) for k, v in feed.items()),
        outputs=tuple(TensorSpec(k, str(v.dtype), _batched(v)) for k, v in outs.items()),
        lineage=lineage.then("export", exporter="script" if script else "trace", call=_style(call)),
        example=call.feed,
    )


def _batched(array: np.ndarray) -> tuple[int | str, ...]:
    return (BATCH, *array.shape[1:]) if array.ndim else ()


def _style(call: _Call) -> str:
    return "keyword" if call.keyword else "positional"


def _qualname(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _first_line(err: BaseException) -> str:
    text = _ANSI.sub("", str(err)).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("Traceback", "  ")):
            return f"{type(err).__name__}: {line.strip()[:300]}"
    return type(err).__name__


def _operator(err: BaseException | None) -> str | None:
    while err is not None:
        match = _OP.search(str(err))
        if match:
            return match.group(1)
        err = err.__cause__ or err.__context__
    return None
