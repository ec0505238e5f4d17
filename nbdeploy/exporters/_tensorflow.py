"""Keras 3 models and ``tf.Module``s → ONNX (tf2onnx, from a frozen graph) or a SavedModel.

Both formats start from one ``tf.function`` over positional tensors named as the model's
inputs, returning its outputs by name (dict keys; ``output``/``output_<i>`` otherwise).
For ONNX that function is frozen here — variables *and* captured constants, such as a
``Normalization`` layer's statistics, become constants — before tf2onnx converts the
graph: ``tf2onnx.convert.from_function`` (and Keras's ``model.export(format="onnx")``,
which calls it) leave captured constants as extra graph inputs, so such a model does not
run, and Keras's own export also refuses a model that was never called.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .. import _onnxio, _tensorflow
from .._deps import require
from .._feed import as_feed, random_feed
from ..artifact import Artifact
from ..errors import ConfigError, ExampleError, ExportError
from ..payloads import SavedModelPayload
from ..provenance import Lineage
from ..types import BATCH, Outputs, TensorSpec
from ._options import ExportOptions
from ._parity import verify
from ._quiet import quiet
from .report import ExportReport

log = logging.getLogger(__name__)
Feed = dict[str, np.ndarray]
DEFAULT_OPSET = 17  # tf2onnx 1.17 converts up to 18; 17 is what onnxruntime and Triton all run
_AUTO_NAME = re.compile(r"^(keras_tensor|input_layer|input)(_\d+)?$")


@dataclasses.dataclass(frozen=True)
class _Call:
    """How to call the model: its inputs, in order, and a function of positional tensors
    that returns its outputs by name."""

    inputs: tuple[TensorSpec, ...]
    invoke: Callable[[list[Any]], Any]
    feed: Feed
    framework: str
    style: str  # how the model takes them: "one", "list", "dict" (Keras), "positional"

    def serve(self, *tensors: Any) -> dict[str, Any]:
        """The model on positional tensors, outputs flattened into ``{name: tensor}``."""
        return _named(self.invoke(list(tensors)))

    def reference(self, feed: Mapping[str, np.ndarray]) -> Outputs:
        """The model itself run eagerly on a feed, as parity compares it."""
        tf = _tensorflow.tensorflow("Running a TensorFlow model")
        tensors = [tf.constant(feed[spec.name]) for spec in self.inputs]
        return {k: _tensorflow.to_numpy(v) for k, v in self.serve(*tensors).items()}


def export(model: Any, example: Any, options: ExportOptions) -> Artifact:
    """Export a Keras model or ``tf.Module``; see :func:`nbdeploy.export`."""
    tf = _tensorflow.tensorflow("Exporting a TensorFlow model")
    call = _keras_call(model, example) if _is_keras(model) else _module_call(model, example)
    version = tf.__version__ if call.framework == "tensorflow" else _keras_version()
    lineage = Lineage(call.framework, version, _qualname(model))
    reference = call.reference
    output_names = list(reference(call.feed))  # also builds a model never called before
    inputs = tuple(_batch(spec, options.dynamic_batch) for spec in call.inputs)
    if options.format == "savedmodel":
        art = _to_savedmodel(model, call, inputs, output_names, lineage, options)
    else:
        art = _to_onnx(call, inputs, lineage, options)
    parity = verify(
        art, reference, call.feed, reference_name=f"{call.framework} {version}",
        dynamic_batch=options.dynamic_batch, atol=options.atol, rtol=options.rtol,
    )  # fmt: skip
    return dataclasses.replace(art, parity=parity, report=ExportReport.of(art.lineage, parity))


def _to_onnx(
    call: _Call, inputs: tuple[TensorSpec, ...], lineage: Lineage, options: ExportOptions
) -> Artifact:
    tf2onnx = require("tf2onnx", extra="tensorflow", feature="Exporting a TensorFlow model to ONNX")
    opset = options.opset or DEFAULT_OPSET
    try:
        with quiet("tf2onnx", "tensorflow", "absl"):
            graph_def, tf_inputs, tf_outputs = _frozen(call, inputs)
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def, input_names=tf_inputs, output_names=list(tf_outputs.values()),
                opset=opset,
            )  # fmt: skip
    except Exception as err:  # tf2onnx and TensorFlow raise many kinds
        raise ExportError(
            f"tf2onnx could not convert the model: {type(err).__name__}: {err}. An op "
            "without an ONNX converter can still be served as it is: export with "
            "format='savedmodel' (Triton's tensorflow backend, TF Serving).",
            operator=_op_in(str(err)),
        ) from err
    proto = _renamed(proto, [s.name for s in inputs], {v: k for k, v in tf_outputs.items()})
    _onnxio.name_batch_dim(proto, BATCH)
    lineage = lineage.then("export", exporter=f"tf2onnx {tf2onnx.__version__}",
                           opset=_onnxio.opset(proto), call=call.style)  # fmt: skip
    return Artifact.from_onnx(proto, name=options.name, lineage=lineage, example=call.feed)


def _frozen(call: _Call, inputs: Sequence[TensorSpec]) -> tuple[Any, list[str], dict[str, str]]:
    """The model's graph with every variable and captured tensor made a constant; its
    input tensor names, in order; its output tensor names by output name."""
    tf = _tensorflow.tensorflow("Exporting a TensorFlow model to ONNX")
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    signature = [_tensorflow.tensor_spec(s, batch=s.has_dynamic_batch) for s in inputs]
    function = tf.function(call.serve, input_signature=signature, autograph=False)
    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(
        concrete, lower_control_flow=False, aggressive_inlining=True
    )
    graph_def = frozen.graph.as_graph_def(add_shapes=True)
    by_name = tf.nest.pack_sequence_as(concrete.structured_outputs, frozen.outputs)
    outputs = {name: tensor.name for name, tensor in by_name.items()}
    return graph_def, [t.name for t in frozen.inputs], outputs


def _renamed(
    proto: onnx.ModelProto, input_names: Sequence[str], output_names: Mapping[str, str]
) -> onnx.ModelProto:
    """The model with its inputs named as the model's (in order), outputs as ours, and the
    leading dimension tf2onnx calls ``unk__<n>`` called ``batch``."""
    import onnx_ir as ir

    model = ir.from_proto(proto)
    for value, name in zip(model.graph.inputs, input_names, strict=True):
        value.name = name
    for value in model.graph.outputs:
        old = value.name or ""
        value.name = output_names.get(old, output_names.get(f"{old}:0", old))
    for value in [*model.graph.inputs, *model.graph.outputs]:
        shape = value.shape
        if shape is not None and shape.rank() and str(shape[0]).startswith("unk__"):
            value.shape = ir.Shape([BATCH, *list(shape)[1:]])
    return ir.to_proto(model)


def _to_savedmodel(
    model: Any,
    call: _Call,
    inputs: tuple[TensorSpec, ...],
    output_names: list[str],
    lineage: Lineage,
    options: ExportOptions,
) -> Artifact:
    folder = Path(tempfile.mkdtemp(prefix="nbdeploy-")) / "model.savedmodel"
    try:
        with quiet("tf2onnx", "tensorflow", "absl"):
            _tensorflow.write(folder, call.serve, inputs, model, keras_model=_is_keras(model))
    except Exception as err:  # TensorFlow raises many kinds
        raise ExportError(
            f"TensorFlow could not save the model: {type(err).__name__}: {err}",
            operator=type(model).__name__,
        ) from err
    payload = SavedModelPayload(folder)
    outputs = payload.signature().specs()[1]
    tf = _tensorflow.tensorflow("Exporting a SavedModel")
    lineage = lineage.then("export", exporter=f"tf.saved_model {tf.__version__}",
                           signature=_tensorflow.SIGNATURE, call=call.style)  # fmt: skip
    by_name = {spec.name: _batch(spec, options.dynamic_batch) for spec in outputs}
    ordered = tuple(by_name[name] for name in output_names)  # the model's order, not sorted
    return Artifact(options.name, payload, inputs, ordered, lineage, example=call.feed)


# -- how a model is called ---------------------------------------------------------------


def _is_keras(model: Any) -> bool:
    return any(c.__module__.startswith("keras.") for c in type(model).__mro__)


def _keras_call(model: Any, example: Any) -> _Call:
    keras = _tensorflow.keras("Exporting a Keras model")
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(
            f"nbdeploy exports Keras models on the TensorFlow backend, not "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before importing keras."
        )
    declared = list(getattr(model, "inputs", None) or []) if _built(model) else []
    if example is None:
        if not declared:
            raise ExampleError("pass example= a batch of inputs: this model declares none.")
        specs = tuple(_declared_spec(t, i, len(declared)) for i, t in enumerate(declared))
        style = "list" if len(specs) > 1 else "one"
        return _Call(specs, _invoker(model, specs, style), random_feed(specs), "keras", style)
    structure, arrays = _structure(example)
    names = _names(structure, example, declared)
    dtypes = [_dtype(a, declared[i] if len(declared) == len(arrays) else None)
              for i, a in enumerate(arrays)]  # fmt: skip
    specs = tuple(
        TensorSpec(n, d, tuple(a.shape)) for n, d, a in zip(names, dtypes, arrays, strict=True)
    )
    feed = as_feed({s.name: a for s, a in zip(specs, arrays, strict=True)}, specs)
    return _Call(specs, _invoker(model, specs, structure), feed, "keras", structure)


def _built(model: Any) -> bool:
    try:
        return bool(getattr(model, "inputs", None))
    except (AttributeError, ValueError):  # a subclassed model has no inputs to show
        return False


def _structure(example: Any) -> tuple[str, list[np.ndarray]]:
    if isinstance(example, Mapping):
        return "dict", [np.asarray(v) for v in example.values()]
    if isinstance(example, tuple | list):
        return "list", [np.asarray(v) for v in example]
    return "one", [np.asarray(example)]


def _names(structure: str, example: Any, declared: list[Any]) -> list[str]:
    """Input names: a dict example's keys, else the names the model's inputs were given,
    else ``input`` / ``input_<i>``."""
    if structure == "dict":
        return [str(k) for k in example]
    count = 1 if structure == "one" else len(example)
    if len(declared) == count and not any(_AUTO_NAME.match(t.name) for t in declared):
        return [str(t.name) for t in declared]
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def _dtype(array: np.ndarray, declared: Any) -> str:
    if declared is not None:
        return str(declared.dtype)
    if array.dtype == np.float64:
        return str(_tensorflow.keras("Exporting a Keras model").backend.floatx())
    return str(array.dtype)


def _declared_spec(tensor: Any, index: int, count: int) -> TensorSpec:
    name = tensor.name if not _AUTO_NAME.match(tensor.name) else (
        "input" if count == 1 else f"input_{index}")  # fmt: skip
    shape = tuple(BATCH if d is None and axis == 0 else d for axis, d in enumerate(tensor.shape))
    return TensorSpec(name, str(tensor.dtype), shape)


def _invoker(model: Any, specs: Sequence[TensorSpec], structure: str) -> Callable[[list[Any]], Any]:
    names = [s.name for s in specs]
    if structure == "dict":
        return lambda tensors: model(dict(zip(names, tensors, strict=True)), training=False)
    if structure == "list":
        return lambda tensors: model(tensors, training=False)
    return lambda tensors: model(tensors[0], training=False)


def _module_call(module: Any, example: Any) -> _Call:
    function = module.__call__ if callable(module) else None
    signature = getattr(function, "input_signature", None)
    if function is None or not signature:
        raise ExportError(
            f"{type(module).__name__} is a tf.Module without a traced signature: decorate "
            "its __call__ with @tf.function(input_signature=[tf.TensorSpec(...), ...]).",
            operator=type(module).__name__,
        )
    params = [p for p in _parameters(function) if p != "self"]
    specs = tuple(
        _tensorflow.spec_of(spec.name or params[i], spec, batch=True)
        for i, spec in enumerate(signature)
    )
    if example is None:
        feed = random_feed(specs)
    else:
        structure, arrays = _structure(example)
        names = [str(k) for k in example] if structure == "dict" else [s.name for s in specs]
        feed = as_feed(dict(zip(names, arrays, strict=True)), specs)
    return _Call(specs, lambda tensors: function(*tensors), feed, "tensorflow", "positional")


def source_reference(model: Any, example: Any) -> Callable[[Feed], Outputs]:
    """Run a Keras model or ``tf.Module`` itself on a feed, outputs named like an export's
    of it from the same ``example`` (for checks after later steps)."""
    call = _keras_call(model, example) if _is_keras(model) else _module_call(model, example)
    return call.reference


def call_of(model: Any, inputs: tuple[TensorSpec, ...], style: str) -> _Call:
    """How to call a model exported before with these inputs, taken the way its export
    recorded (``style``); for running the source model beside its artifacts."""
    if not _is_keras(model):
        return _module_call(model, None)
    keras_style = (
        style if style in ("one", "list", "dict") else ("one" if len(inputs) == 1 else "list")
    )
    return _Call(inputs, _invoker(model, inputs, keras_style), {}, "keras", keras_style)


def _parameters(function: Any) -> list[str]:
    import inspect

    python = getattr(function, "python_function", function)
    return list(inspect.signature(python).parameters)


# -- small helpers ----------------------------------------------------------------------


def _named(result: Any, prefix: str = "") -> dict[str, Any]:
    """A model's result flattened into ``{name: tensor}``: dict keys (nested ones joined
    by ``_``), ``output_<i>`` for sequence positions, ``output`` for one tensor."""
    if isinstance(result, Mapping):
        items = [(str(k), v) for k, v in result.items()]
    elif isinstance(result, tuple | list):
        items = [(f"output_{i}" if not prefix else str(i), v) for i, v in enumerate(result)]
    else:
        return {prefix or "output": result}
    named: dict[str, Any] = {}
    for key, value in items:
        named.update(_named(value, f"{prefix}_{key}" if prefix else key))
    return named


def _batch(spec: TensorSpec, dynamic: bool) -> TensorSpec:
    """The spec with its leading dimension dynamic (``batch``) or fixed as in the example."""
    if not spec.shape:
        return spec
    first = spec.shape[0]
    if dynamic:
        return dataclasses.replace(spec, shape=(BATCH, *spec.shape[1:]))
    return spec if isinstance(first, int) else dataclasses.replace(spec, shape=(1, *spec.shape[1:]))


def _keras_version() -> str:
    return str(_tensorflow.keras("Exporting a Keras model").__version__)


def _qualname(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _op_in(message: str) -> str:
    """The TensorFlow op a converter error names, if any."""
    found = re.search(r"\b(?:op|ops|Op|type)\W+([A-Z][A-Za-z0-9]+)", message)
    return found.group(1) if found else "(unknown)"
