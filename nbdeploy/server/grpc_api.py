"""The gRPC front end: Triton's ``GRPCInferenceService`` (the stubs tritonclient ships)
over gRPC's wire protocol on uvicorn's HTTP/2 (``grpc_wire``, which turns a
:class:`ProtocolError` into its gRPC status and checks the token for every method but the
health probes), on the same dataplane as HTTP.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Mapping

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb

from ..errors import ProtocolError
from .codecs import (
    V2_TO_NUMPY,
    InferRequest,
    ShmInput,
    class_count,
    decode_raw,
    encode_raw,
    shm_ref,
    timeout_us,
)
from .dataplane import DataPlane
from .grpc_wire import GrpcApp, GrpcFrontEnd, Method, WireContext
from .parameters import decode_load
from .security import Guard, is_loopback
from .shared_memory import CUDA_SHM_REFUSAL

log = logging.getLogger(__name__)

__all__ = ["build_front_end"]

_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
OPEN_METHODS = frozenset(f"/{_SERVICE.full_name}/{name}" for name in ("ServerLive", "ServerReady"))

# InferTensorContents field per V2 datatype (when a client sends typed contents).
_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def build_front_end(dataplane: DataPlane, guard: Guard, sock: socket.socket) -> GrpcFrontEnd:
    """The inference service on a listening socket (``start()`` it on the event loop)."""
    service = _Service(dataplane)
    methods = {f"/{_SERVICE.full_name}/{m.name}": Method(getattr(pb, m.input_type.name),
                                                          getattr(service, m.name),
                                                          m.client_streaming)
               for m in _SERVICE.methods}  # fmt: skip
    return GrpcFrontEnd(GrpcApp(methods, guard, OPEN_METHODS), sock)


class _Service:
    """Triton's methods, one coroutine each, named as in its proto."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: WireContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: WireContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dp.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: WireContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.dp.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: WireContext
    ) -> pb.ServerMetadataResponse:
        return json_format.ParseDict(self.dp.server_metadata(), pb.ServerMetadataResponse())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: WireContext
    ) -> pb.ModelMetadataResponse:
        doc = self.dp.model_metadata(request.name, request.version)
        return json_format.ParseDict(doc, pb.ModelMetadataResponse())

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: WireContext
    ) -> pb.ModelConfigResponse:
        response = pb.ModelConfigResponse()
        response.config.CopyFrom(self.dp.model_config(request.name, request.version))
        return response

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: WireContext
    ) -> pb.ModelStatisticsResponse:
        doc = self.dp.statistics(request.name, request.version)
        return json_format.ParseDict(doc, pb.ModelStatisticsResponse())

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: WireContext
    ) -> pb.RepositoryIndexResponse:
        rows = self.dp.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**r)
                                                  for r in rows])  # fmt: skip

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: WireContext
    ) -> pb.RepositoryModelLoadResponse:
        params = request.parameters
        texts = {k: v.string_param for k, v in params.items() if not k.startswith("file:")}
        files = {k[5:]: v.bytes_param for k, v in params.items() if k.startswith("file:")}
        await self.dp.load(request.model_name, **vars(decode_load(texts, files)))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: WireContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self.dp.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def TraceSetting(
        self, request: pb.TraceSettingRequest, context: WireContext
    ) -> pb.TraceSettingResponse:
        changes = {key: list(value.value) or None for key, value in request.settings.items()}
        if changes:
            doc = await self.dp.update_trace(request.model_name, changes)
        else:
            doc = self.dp.trace_settings(request.model_name)
        response = pb.TraceSettingResponse()
        for key, value in doc.items():
            response.settings[key].value.extend(value if isinstance(value, list) else [value])
        return response

    async def LogSettings(
        self, request: pb.LogSettingsRequest, context: WireContext
    ) -> pb.LogSettingsResponse:
        changes = {key: getattr(value, value.WhichOneof("parameter_choice"))
                   for key, value in request.settings.items()}  # fmt: skip
        doc = await self.dp.update_log(changes) if changes else self.dp.settings.log
        response = pb.LogSettingsResponse()
        for key, value in doc.items():
            kind = {bool: "bool_param", int: "uint32_param"}.get(type(value), "string_param")
            setattr(response.settings[key], kind, value)
        return response

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: WireContext
    ) -> pb.SystemSharedMemoryStatusResponse:
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self.dp.shm.status(request.name):
            response.regions[str(region["name"])].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(**region))  # fmt: skip
        return response

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: WireContext
    ) -> pb.SystemSharedMemoryRegisterResponse:
        _from_this_host(context.peer())
        await self.dp.register_shm(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: WireContext
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        await self.dp.unregister_shm(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: WireContext
    ) -> pb.CudaSharedMemoryStatusResponse:
        return pb.CudaSharedMemoryStatusResponse()  # none can be registered here

    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: WireContext
    ) -> pb.CudaSharedMemoryRegisterResponse:
        raise ProtocolError(CUDA_SHM_REFUSAL)

    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: WireContext
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: WireContext
    ) -> pb.ModelInferResponse:
        return await self._infer(request)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: WireContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Triton's bidirectional stream: one response per request, in order; a bad request
        answers with ``error_message`` and the stream goes on, as Triton does."""
        async for request in requests:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except ProtocolError as err:
                failed = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
                yield pb.ModelStreamInferResponse(error_message=str(err), infer_response=failed)

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        decoded = _decode(request)
        result = await self.dp.infer(request.model_name, request.model_version, decoded)
        response = pb.ModelInferResponse(
            model_name=result.model, model_version=result.version, id=request.id
        )
        for name, array in result.outputs.items():
            datatype, raw = encode_raw(np.asarray(array))
            output = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
            if name in result.in_shm:  # the bytes are in the client's region already
                output.parameters["shared_memory_region"].string_param = (
                    decoded.shm_outputs[name].region)  # fmt: skip
                output.parameters["shared_memory_byte_size"].int64_param = result.in_shm[name]
                raw = b""  # keeps raw_output_contents aligned with outputs
            response.raw_output_contents.append(raw)
        return response


def _decode(request: pb.ModelInferRequest) -> InferRequest:
    shared = {t.name: ref for t in request.inputs
              if (ref := shm_ref(_params(t.parameters), f"input '{t.name}'"))}  # fmt: skip
    sent = [t for t in request.inputs if t.name not in shared]
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(sent):
        raise ProtocolError(
            f"{len(sent)} inputs but {len(raw)} raw_input_contents; send one per input "
            "(inputs in shared memory need none)"
        )
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(sent):
        if tensor.name in inputs:
            raise ProtocolError(f"input '{tensor.name}' is given twice")
        shape = list(tensor.shape)
        inputs[tensor.name] = (decode_raw(tensor.name, raw[i], tensor.datatype, shape) if raw
                               else _from_contents(tensor, shape))  # fmt: skip
    shm_inputs = {t.name: ShmInput(shared[t.name], t.datatype, list(t.shape))
                  for t in request.inputs if t.name in shared}  # fmt: skip
    if not inputs and not shm_inputs:
        raise ProtocolError("the request has no inputs")
    names = [o.name for o in request.outputs]
    if len(set(names)) != len(names):
        raise ProtocolError("duplicate output name in the request; ask for each output once")
    outputs = {o.name: _params(o.parameters) for o in request.outputs}
    classes = {name: class_count(name, p["classification"])
               for name, p in outputs.items() if "classification" in p}  # fmt: skip
    shm_outputs = {name: ref for name, p in outputs.items()
                   if (ref := shm_ref(p, f"output '{name}'"))}  # fmt: skip
    timeout = _params(request.parameters).get("timeout")
    return InferRequest(inputs, dict.fromkeys(names, True), id=request.id, classes=classes,
                        timeout_us=timeout_us(timeout), shm_inputs=shm_inputs,
                        shm_outputs=shm_outputs)  # fmt: skip


def _from_this_host(peer: str) -> None:
    """Shared memory is same-host: only loopback (or Unix socket) peers may register it."""
    kind, _, address = peer.partition(":")
    host = address.rpartition(":")[0].strip("[]") if kind in ("ipv4", "ipv6") else ""
    if kind != "unix" and not is_loopback(host):
        raise ProtocolError("shared memory can only be registered by a client on this host",
                            status=403)  # fmt: skip


def _params(parameters: Mapping[str, pb.InferParameter]) -> dict[str, object]:
    """gRPC's InferParameter map as plain values."""
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in parameters.items()}  # fmt: skip


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor, shape: list[int]) -> np.ndarray:
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise ProtocolError(
            f"input '{tensor.name}': datatype {tensor.datatype!r} cannot travel as typed "
            "contents; send raw_input_contents"
        )
    values = list(getattr(tensor.contents, field))
    raw = b"".join(len(v).to_bytes(4, "little") + v for v in values) if field == "bytes_contents" \
        else np.asarray(values, dtype=V2_TO_NUMPY[tensor.datatype]).tobytes()  # fmt: skip
    return decode_raw(tensor.name, raw, tensor.datatype, shape)
