"""Triton model configurations (``config.pbtxt``), built with tritonclient's own
``model_config_pb2`` and protobuf's text format — never by pasting strings.

One implementation for the local server and for pushes to a real Triton.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import ConfigError
from ..types import BY_NUMPY, BY_V2, DTYPES, TensorSpec

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "build_config",
    "from_json",
    "from_text",
    "session_entries",
    "signature",
    "to_json",
    "to_text",
]

ModelConfig = mc.ModelConfig
KIND_GPU = mc.ModelInstanceGroup.KIND_GPU
KIND_CPU = mc.ModelInstanceGroup.KIND_CPU

DEFAULT_MAX_BATCH_SIZE = 128  # a feature table or an image batch fits in one request
SESSION_PREFIX = "session."  # config parameters passed to onnxruntime as session entries


def v2_datatype(dtype: str) -> str:
    """The V2 datatype name (``"FP32"``) of a numpy dtype name (``"float32"``)."""
    try:
        return BY_NUMPY[dtype].v2
    except KeyError:
        raise ConfigError(f"dtype {dtype!r} cannot be served; Triton has no such type") from None


def datatype_name(data_type: int) -> str:
    """The V2 datatype (``"FP32"``, ``"BYTES"``) of a config's ``TYPE_FP32``/``TYPE_STRING``."""
    name = str(mc.DataType.Name(data_type))
    return next((d.v2 for d in DTYPES if d.config == name), name.removeprefix("TYPE_"))


def build_config(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    platform: str = "onnxruntime_onnx",
    backend: str = "",
    max_batch_size: int | None = None,
    instances: int = 1,
    dynamic_batching: bool = True,
    preferred_batch_sizes: Iterable[int] = (),
    max_queue_delay_us: int = 0,
    parameters: Mapping[str, str] | None = None,
) -> mc.ModelConfig:
    """The Triton config of a model with this signature.

    Args:
        name: Model name.
        inputs: Input specs; a dynamic leading dimension on every input and output makes
            the model batchable, and it is then left out of ``dims`` as Triton expects.
        outputs: Output specs.
        platform: Triton platform (``"onnxruntime_onnx"``, ``"pytorch_libtorch"``).
        backend: Triton backend (``"python"``); used instead of ``platform`` when given.
        max_batch_size: Largest batch; ``None`` picks :data:`DEFAULT_MAX_BATCH_SIZE` for
            batchable models and 0 (no batching) otherwise.
        instances: Model instances (parallel sessions) on the CPU.
        dynamic_batching: Merge concurrent requests into one run (batchable models only).
        preferred_batch_sizes: Batch sizes the batcher waits for, up to the queue delay.
        max_queue_delay_us: How long a request may wait for others to batch with.
        parameters: String parameters (``session.*`` keys reach onnxruntime).
    """
    batchable = all(spec.has_dynamic_batch for spec in (*inputs, *outputs))
    if max_batch_size is None:
        max_batch_size = DEFAULT_MAX_BATCH_SIZE if batchable else 0
    if max_batch_size < 0 or (max_batch_size > 0 and not batchable):
        raise ConfigError(
            f"max_batch_size={max_batch_size} needs every input and output to have a dynamic "
            "leading (batch) dimension; pass max_batch_size=0 for this model"
        )
    if instances < 1:
        raise ConfigError(f"instances must be at least 1, not {instances}")
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if backend:
        config.backend = backend
    else:
        config.platform = platform
    skip = 1 if max_batch_size > 0 else 0
    for spec in inputs:
        config.input.add(name=spec.name, data_type=_type(spec), dims=_dims(spec, skip))
    for spec in outputs:
        config.output.add(name=spec.name, data_type=_type(spec), dims=_dims(spec, skip))
    config.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    if dynamic_batching and max_batch_size > 0:
        config.dynamic_batching.preferred_batch_size.extend(preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


_NOT_TENSORS = {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional"}


def _type(spec: TensorSpec) -> int:
    if spec.dtype in _NOT_TENSORS:
        raise ConfigError(
            f"'{spec.name}' is {_NOT_TENSORS[spec.dtype]}, not a tensor: Triton and the V2 "
            f"protocol carry tensors only. End the graph with a tensor (ConcatFromSequence, "
            f"SequenceAt) to serve it; art.run() returns it as it is."
        )
    v2_datatype(spec.dtype)  # a ConfigError for a type Triton does not have
    return int(mc.DataType.Value(BY_NUMPY[spec.dtype].config))


def _dims(spec: TensorSpec, skip: int) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape[skip:]]


def signature(config: mc.ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of a config, the batch dimension put back in front."""
    lead: tuple[str, ...] = ("batch",) if config.max_batch_size > 0 else ()

    def spec(tensor: Any) -> TensorSpec:
        v2 = datatype_name(tensor.data_type)
        dims = tuple(None if d < 0 else int(d) for d in tensor.dims)
        numpy = BY_V2[v2].numpy if v2 in BY_V2 else "unknown"
        return TensorSpec(tensor.name, numpy, (*lead, *dims))

    return [spec(t) for t in config.input], [spec(t) for t in config.output]


def session_entries(config: mc.ModelConfig) -> dict[str, str]:
    """The onnxruntime session config entries a config carries (``session.*`` keys)."""
    return {
        key: param.string_value
        for key, param in config.parameters.items()
        if key.startswith(SESSION_PREFIX)
    }


def to_text(config: mc.ModelConfig) -> str:
    """``config.pbtxt`` text."""
    return str(text_format.MessageToString(config))


def from_text(text: str) -> mc.ModelConfig:
    """Parse ``config.pbtxt`` text; a :class:`ConfigError` names what is wrong."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as err:
        raise ConfigError(f"config.pbtxt is not a valid model config: {err}") from err


def to_json(config: mc.ModelConfig, *, defaults: bool = True) -> dict[str, Any]:
    """The config as Triton's JSON: with ``defaults``, every field (what ``GET
    /v2/models/{name}/config`` returns: clients read ``max_batch_size: 0`` and ``format``);
    without, only the fields set (for a load request). 64-bit integers are numbers where
    protobuf's JSON would write strings."""
    doc: dict[str, Any] = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=defaults
    )
    return _int64_as_numbers(doc, config.DESCRIPTOR)


_INT64 = {FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64}


def _int64_as_numbers(doc: dict[str, Any], descriptor: Any) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in doc:
            continue
        value = doc[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            if entry.message_type is not None:
                doc[field.name] = {k: _int64_as_numbers(v, entry.message_type)
                                   for k, v in value.items()}  # fmt: skip
        elif field.message_type is not None:
            items = value if isinstance(value, list) else [value]
            for item in items:
                _int64_as_numbers(item, field.message_type)
        elif field.cpp_type in _INT64:
            doc[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return doc


def from_json(text: str | bytes) -> mc.ModelConfig:
    """Parse a JSON model config (the ``config`` parameter of a repository load)."""
    try:
        return json_format.Parse(text, mc.ModelConfig())
    except json_format.ParseError as err:
        raise ConfigError(f"the model config is not valid: {err}") from err
