"""TF Serving's gRPC API (``tensorflow.serving.PredictionService`` and ``ModelService``)
on ``grpc.aio``, over the same dataplane as the V2 front ends, on a port of its own
(``--tfs-grpc-port``).

This is the one module that touches the stubs ``tensorflow-serving-api`` ships. Importing
them imports tensorflow (seconds), so the server imports this module only when the port
is asked for; without the package, importing it raises :class:`MissingDependencyError`.
The stubs carry no type hints: their messages are ``Any`` here and nowhere else.

Every model serves one signature, ``serving_default`` (method
``tensorflow/serving/predict``), built from its inputs and outputs. ``Classify`` and
``Regress`` need a classify or regress signature (serialized ``tf.Example`` in), so they
answer as TF Serving does for a predict-only model: INVALID_ARGUMENT, naming Predict's
inputs instead.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, NoReturn

import grpc

from .._deps import require
from ..errors import ProtocolError, ServerError
from .codecs import V2_TO_NUMPY, InferRequest
from .dataplane import DataPlane
from .grpc_common import Context, TokenCheck, translating
from .security import Guard
from .tensor_proto import TF_TYPES, check_types, fill, to_array
from .tfserving import label_version, version_states

__all__ = ["SIGNATURE", "build_server"]


def _stubs(module: str) -> ModuleType:
    # The stubs import tensorflow, whose C++ start-up notes (oneDNN, CPU features) would
    # fill the server log; the server runs no TF op, it uses only the protos. A setting of
    # the user's wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    return require(f"tensorflow_serving.apis.{module}", extra="tfserving",
                   feature="TF Serving's gRPC API (tfs_grpc_port)",
                   package="tensorflow-serving-api")  # fmt: skip


predict_pb2 = _stubs("predict_pb2")
metadata_pb2 = _stubs("get_model_metadata_pb2")
status_pb2 = _stubs("get_model_status_pb2")
prediction_grpc = _stubs("prediction_service_pb2_grpc")
model_grpc = _stubs("model_service_pb2_grpc")

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
_ERROR_UNKNOWN = 2  # tensorflow.error.Code.UNKNOWN: a version that failed to load


def build_server(
    dataplane: DataPlane, guard: Guard, address: str, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A ``grpc.aio`` server with TF Serving's two services bound to ``address``
    (host:port), and the port it got. The token and the size limit are the V2 ones.

    Raises:
        ServerError: The address cannot be bound (the port is taken).
    """
    server = grpc.aio.server(
        interceptors=[TokenCheck(guard)] if guard.token else [],
        options=[
            ("grpc.max_receive_message_length", guard.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", int(reuse_port)),  # worker processes share the port
        ],
    )
    prediction = _Prediction(dataplane, guard.max_request_bytes)
    prediction_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_grpc.add_ModelServiceServicer_to_server(_Models(dataplane), server)
    try:
        return server, server.add_insecure_port(address)
    except RuntimeError as err:  # grpc's "Failed to bind": a TF Serving may hold 8500
        raise ServerError(f"cannot listen on {address} for TF Serving's gRPC API ({err}); "
                          "choose another tfs_grpc_port (0: any free)") from err  # fmt: skip


class _Prediction:
    """``tensorflow.serving.PredictionService``."""

    def __init__(self, dataplane: DataPlane, max_bytes: int) -> None:
        self.dp = dataplane
        self.max_bytes = max_bytes  # the most bytes of input arrays built from a request

    @translating
    async def Predict(self, request: Any, context: Context) -> Any:
        """One inference; with no version named, the traffic split picks one (a canary)."""
        spec = request.model_spec
        _check_signature(spec)
        if not request.inputs:
            raise ProtocolError(f"the request has no inputs; model '{spec.name}' takes "
                                f"{self._input_names(spec)}")  # fmt: skip
        filtered = list(request.output_filter)
        if len(set(filtered)) != len(filtered):
            raise ProtocolError(f"output_filter names an output twice: {filtered}")
        inputs, budget = {}, self.max_bytes  # all inputs together, as built
        for key, tensor in request.inputs.items():
            inputs[key] = to_array(tensor, key, budget)
            budget -= inputs[key].nbytes
        version = _version(self.dp, spec)
        check_types(inputs, self.dp.inputs(spec.name, version), spec.name)
        wanted = dict.fromkeys(filtered, True)  # none: every output
        result = await self.dp.infer(spec.name, version, InferRequest(inputs, wanted))
        response = predict_pb2.PredictResponse()
        _answering(response.model_spec, spec.name, result.version)
        for key, array in result.outputs.items():
            fill(response.outputs[key], array, key)
        return response

    @translating
    async def GetModelMetadata(self, request: Any, context: Context) -> Any:
        """The ``serving_default`` signature of the version asked for (else the newest one
        taking traffic), as a ``SignatureDefMap`` under ``signature_def``."""
        fields = list(request.metadata_field)
        if not fields:
            raise ProtocolError("GetModelMetadataRequest must specify at least one "
                                "metadata_field; ask for 'signature_def'")  # fmt: skip
        unknown = [f for f in fields if f != "signature_def"]
        if unknown:
            raise ProtocolError(f"Metadata field {unknown[0]} is not supported; "
                                "this server answers 'signature_def'")  # fmt: skip
        spec = request.model_spec
        version = _version(self.dp, spec) or _newest_serving(self.dp, spec.name)
        doc = self.dp.model_metadata(spec.name, version)
        signatures = metadata_pb2.SignatureDefMap()
        signature = signatures.signature_def[SIGNATURE]
        signature.method_name = PREDICT_METHOD
        for tensors, infos in ((doc["inputs"], signature.inputs),
                               (doc["outputs"], signature.outputs)):  # fmt: skip
            for tensor in tensors:
                info = infos[tensor["name"]]
                info.name = tensor["name"]
                info.dtype = TF_TYPES[V2_TO_NUMPY[tensor["datatype"]].name].number
                for size in tensor["shape"]:
                    info.tensor_shape.dim.add(size=size)
        response = metadata_pb2.GetModelMetadataResponse()
        _answering(response.model_spec, spec.name, version)
        response.model_spec.ClearField("signature_name")
        response.metadata["signature_def"].Pack(signatures)
        return response

    @translating
    async def Classify(self, request: Any, context: Context) -> Any:
        """Refused as TF Serving refuses it for a model whose signature is predict."""
        self._not_predict(request.model_spec, "classification", "classify")

    @translating
    async def Regress(self, request: Any, context: Context) -> Any:
        """Refused as TF Serving refuses it for a model whose signature is predict."""
        self._not_predict(request.model_spec, "regression", "regress")

    @translating
    async def MultiInference(self, request: Any, context: Context) -> Any:
        """Not implemented: it runs Classify and Regress tasks, which no model here has."""
        raise ProtocolError(
            "MultiInference is not implemented: it batches Classify and Regress tasks, and "
            f"models served here have one predict signature ('{SIGNATURE}'); call Predict",
            status=501,
        )

    def _not_predict(self, spec: Any, kind: str, method: str) -> NoReturn:
        _check_signature(spec)
        inputs = self._input_names(spec)
        raise ProtocolError(
            f"Expected {kind} signature method_name to be tensorflow/serving/{method}. Was: "
            f"{PREDICT_METHOD}. Model '{spec.name}' serves one signature, '{SIGNATURE}', "
            f"built from its inputs and outputs: call Predict with inputs {inputs}"
        )

    def _input_names(self, spec: Any) -> list[str]:
        return [t.name for t in self.dp.inputs(spec.name, _version(self.dp, spec))]


class _Models:
    """``tensorflow.serving.ModelService``."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    @translating
    async def GetModelStatus(self, request: Any, context: Context) -> Any:
        """Each version of the model in the repository: AVAILABLE (served), LOADING (after
        a restart) or END (unloaded, or failed to load: then with the reason)."""
        spec = request.model_spec
        version = _version(self.dp, spec)
        states = version_states(spec.name, self.dp.index(), int(version) if version else None)
        response = status_pb2.GetModelStatusResponse()
        for number, state, error in states:
            status = response.model_version_status.add(version=number, state=state)
            if error:
                status.status.error_code = _ERROR_UNKNOWN
                status.status.error_message = error
        return response

    @translating
    async def HandleReloadConfigRequest(self, request: Any, context: Context) -> Any:
        """Not implemented: the repository is this server's config."""
        raise ProtocolError(
            "HandleReloadConfigRequest is not implemented: this server's model repository is "
            "its config (no base_path to reload from). Serve versions with nbd.serve(...) or "
            "the V2 repository API (tritonclient's load_model), and move traffic with "
            "Deployment.promote() / rollback()",
            status=501,
        )


def _check_signature(spec: Any) -> None:
    if spec.signature_name not in ("", SIGNATURE):
        raise ProtocolError(
            f'Serving signature key "{spec.signature_name}" not found; model '
            f"'{spec.name}' serves one signature, '{SIGNATURE}'",
            status=409,
        )


def _version(dp: DataPlane, spec: Any) -> str:
    """The version a ``ModelSpec`` names (by number or label); "" for none."""
    if spec.HasField("version"):
        return str(spec.version.value)
    if spec.version_label:
        return label_version(spec.name, spec.version_label, dp.traffic(spec.name))
    return ""


def _newest_serving(dp: DataPlane, name: str) -> str:
    """The version the dataplane describes when none is named."""
    return str(max(int(v) for v, share in dp.traffic(name).items() if share > 0))


def _answering(out: Any, name: str, version: str) -> None:
    out.name = name
    out.version.value = int(version)
    out.signature_name = SIGNATURE
