"""A KServe ``InferenceService`` on KServe's Triton runtime, with a canary in the form the
chosen deployment mode honours (read from KServe 0.20's Go types, webhook and controller):

- ``"serverless"`` (annotation ``serving.kserve.io/deploymentMode: Knative``; KServe 0.20
  still reads the older ``Serverless``): ``spec.predictor.canaryTrafficPercent``. Knative
  keeps the last rolled-out revision and sends it the rest of the traffic, so the manifest
  names only the new model.
- ``"standard"`` (annotation ``Standard``, once ``RawDeployment``): KServe 0.20 ignores
  ``canaryTrafficPercent`` here (only its Knative reconciler reads it). Its canary is
  ``spec.canary: [{trafficPercent, predictor: {name, ...}}]`` beside the stable
  ``spec.predictor``; the webhook refuses that list in any other mode, and refuses
  ``maxReplicas``/``scaleMetric``/``scaleTarget``/``autoScaling`` on a canary predictor
  (a canary runs fixed replicas). So the manifest names both models: the stable one
  (``stable_uri``) and the new one. KServe 0.20.0 itself sizes the canary's replicas from
  ``trafficPercent`` but routes no traffic to it; weighted HTTPRoute backends came after
  it, on KServe's main branch (kserve/kserve#5912).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..artifact import Artifact
from ..errors import ConfigError
from .kubernetes import resources

if TYPE_CHECKING:
    from .manifests import Autoscale

__all__ = ["CANARY_NAME", "MODES", "MODE_ANNOTATION", "Mode", "Rollout", "inference_service"]

Mode = Literal["serverless", "standard"]
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
MODES: dict[str, str] = {"serverless": "Knative", "standard": "Standard"}
CANARY_NAME = "canary"  # the canary predictor's name: its Deployment is <isvc>-canary-predictor
Object = dict[str, Any]


@dataclass(frozen=True)
class Rollout:
    """How a new model reaches traffic on KServe.

    Attributes:
        mode: ``"serverless"`` (Knative) or ``"standard"`` (plain Deployments).
        canary: Percent of traffic for the new model, or ``None`` for all of it.
        stable_uri: Standard mode's canary: the storage URI of the model serving now.
    """

    mode: Mode = "serverless"
    canary: float | None = None
    stable_uri: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"mode must be 'serverless' (Knative) or 'standard' (plain Deployments), "
                f"not {self.mode!r}"
            )
        if self.canary is not None and not 0 < self.canary < 100:
            raise ConfigError(f"canary must be a percentage between 0 and 100, not {self.canary}")
        if self.mode == "serverless" and self.stable_uri is not None:
            raise ConfigError(
                "stable_uri= is for mode='standard': in serverless mode Knative keeps the "
                "revision now serving by itself; drop stable_uri"
            )
        if self.mode == "standard" and self.canary is not None and self.stable_uri is None:
            raise ConfigError(
                "a canary in mode='standard' runs beside the model serving now, which the "
                "manifest must name: pass stable_uri= (its storage URI), or use "
                "mode='serverless', where Knative keeps the previous revision itself"
            )
        if self.mode == "standard" and self.canary is None and self.stable_uri is not None:
            raise ConfigError("stable_uri= only goes with canary=; without a canary drop it")


# KServe's model format (its Triton runtime lists each) for nbdeploy's artifact formats.
MODEL_FORMATS = {"onnx": "onnx", "torchscript": "pytorch", "savedmodel": "tensorflow"}


def _model(art: Artifact, storage_uri: str, gpu: bool) -> Object:
    return {
        "modelFormat": {"name": MODEL_FORMATS[art.format]},
        "runtime": "kserve-tritonserver",
        "protocolVersion": "v2",
        "storageUri": storage_uri,
        "resources": resources(gpu),
    }


def inference_service(
    art: Artifact,
    meta: Object,
    labels: dict[str, str],
    storage_uri: str,
    replicas: int,
    rollout: Rollout,
    autoscale: Autoscale | None,
    gpu: bool,
) -> Object:
    """The ``InferenceService`` serving ``art`` from ``storage_uri`` the way ``rollout`` says."""
    standard_canary = rollout.mode == "standard" and rollout.canary is not None
    stable = rollout.stable_uri if standard_canary and rollout.stable_uri else storage_uri
    predictor: Object = {
        "minReplicas": autoscale.min_replicas if autoscale else replicas,
        "maxReplicas": autoscale.max_replicas if autoscale else replicas,
        "model": _model(art, stable, gpu),
    }
    if autoscale:
        predictor |= {"scaleMetric": "cpu", "scaleTarget": autoscale.cpu_percent}
    spec: Object = {"predictor": predictor}
    if rollout.canary is not None and rollout.mode == "serverless":
        predictor["canaryTrafficPercent"] = round(rollout.canary)
    elif standard_canary and rollout.canary is not None:
        # Fixed replicas: KServe derives them from the share (ceil(stable * percent / 100)).
        canary_predictor = {"name": CANARY_NAME, "model": _model(art, storage_uri, gpu)}
        spec["canary"] = [{"trafficPercent": round(rollout.canary), "predictor": canary_predictor}]
    annotations = {MODE_ANNOTATION: MODES[rollout.mode]}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {**meta, "labels": labels, "annotations": annotations},
        "spec": spec,
    }
