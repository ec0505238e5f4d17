"""The deploy step as data: write the Triton repository, then decide the
``InferenceService`` (and the merge patch for one that exists) from the manifests of
:func:`nbdeploy.manifests`. What exists in the cluster comes in as a plain dict, so all
of this runs without a cluster; ``cluster.py`` only reads and sends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..deploy.kserve import MODE_ANNOTATION, MODES, Mode, Rollout
from ..errors import ConfigError
from .steps import load_artifact

__all__ = ["deploy_model", "merge_patch", "rollout_for", "storage_uri_for", "write_release"]

log = logging.getLogger(__name__)
Object = dict[str, Any]
# KServe 0.20 still reads the names it had before 0.16.
_LEGACY = {"Serverless": "Knative", "RawDeployment": "Standard"}


def _mode_of(service: Object) -> str | None:
    """The mode KServe runs ``service`` in: its status says (KServe records the mode it
    chose there first), else its annotation."""
    status = (service.get("status") or {}).get("deploymentMode")
    value = status or (service.get("metadata", {}).get("annotations") or {}).get(MODE_ANNOTATION)
    return _LEGACY.get(value, value) if isinstance(value, str) else None


def rollout_for(mode: Mode, canary: float | None, current: Object | None) -> Rollout:
    """How the new model reaches traffic, given the ``InferenceService`` now serving.

    A first deployment takes all traffic (there is nothing to share it with). A Standard
    canary serves beside the model the current service's predictor serves.

    Raises:
        ConfigError: The current service runs in another mode (KServe refuses to change
            it), or its predictor names no ``storageUri`` to keep serving.
    """
    if current is not None and _mode_of(current) not in (None, MODES[mode]):
        raise ConfigError(
            f"the InferenceService {current['metadata']['name']!r} runs in "
            f"{_mode_of(current)} mode and KServe refuses to change it: deploy with the mode "
            "it has, or delete the service first"
        )
    if canary is None or (mode == "standard" and current is None):
        return Rollout(mode)
    if mode == "serverless":
        return Rollout(mode, canary)
    predictor = (current or {}).get("spec", {}).get("predictor", {})
    stable = (predictor.get("model") or {}).get("storageUri")
    if not isinstance(stable, str):
        raise ConfigError(
            "the current InferenceService's predictor has no model.storageUri for the canary "
            "to serve beside: deploy once without canary to replace it"
        )
    return Rollout(mode, canary, stable)


def merge_patch(desired: Object, current: Object) -> Object:
    """A JSON merge patch turning ``current`` into ``desired``: ``desired`` itself, plus a
    ``null`` for each canary field the other form (or a finished canary) left behind."""
    spec = dict(desired["spec"])
    predictor = dict(spec["predictor"])
    if "canary" in current.get("spec", {}) and "canary" not in spec:
        spec["canary"] = None
    old_predictor = current.get("spec", {}).get("predictor", {})
    if "canaryTrafficPercent" in old_predictor and "canaryTrafficPercent" not in predictor:
        predictor["canaryTrafficPercent"] = None
    return {**desired, "spec": {**spec, "predictor": predictor}}


def write_release(
    candidate: str | Path,
    repository: str | Path,
    *,
    name: str,
    storage_uri: str,
    mode: Mode = "serverless",
    canary: float | None = None,
    namespace: str | None = None,
    current: Object | None = None,
) -> Object:
    """Write the candidate into a Triton repository and return its ``InferenceService``.

    Args:
        candidate: The folder of the artifact to deploy.
        repository: The Triton model repository folder (``<repository>/<name>/1/...``).
        name: Model and ``InferenceService`` name (a DNS label).
        storage_uri: Where KServe finds ``repository`` (the object-storage URI of it).
        mode: KServe's deployment mode, ``"serverless"`` or ``"standard"``.
        canary: Percent of traffic for the new model (``None``: all of it).
        namespace: The service's namespace.
        current: The ``InferenceService`` serving now, if any (from the cluster).
    """
    from ..deploy.manifests import manifests
    from ..triton.model_folder import write_version

    art = load_artifact(candidate)
    write_version(repository, art, name=name, version=1)
    rollout = rollout_for(mode, canary, current)
    made = manifests(art, target="kserve", name=name, storage_uri=storage_uri,
                     canary=rollout.canary, mode=rollout.mode, stable_uri=rollout.stable_uri,
                     namespace=namespace)  # fmt: skip
    service: Object = made.objects[0]
    return service


def storage_uri_for(uri: str) -> str:
    """The URI KServe's storage initializer reads for a KFP artifact's URI: KFP names its
    MinIO store ``minio://bucket/...``, which KServe reads as S3 (``s3://bucket/...``,
    with the S3 endpoint and credentials set on KServe's service account)."""
    return "s3://" + uri.removeprefix("minio://") if uri.startswith("minio://") else uri


def deploy_model(
    candidate: str | Path,
    repository: str | Path,
    service_file: str | Path,
    *,
    name: str,
    storage_uri: str,
    mode: str = "serverless",
    canary: float | None = None,
    namespace: str = "",
    apply: bool = True,
) -> Object:
    """The deploy component: the Triton repository, then the ``InferenceService``
    created (when absent) or patched (when present) in the cluster this pod runs in.

    Args:
        candidate: The folder of the artifact to deploy.
        repository: The repository folder to write (the component's output artifact).
        service_file: Where to write the ``InferenceService`` applied, as YAML.
        name: Model and service name.
        storage_uri: The repository's object-storage URI (``minio://`` becomes ``s3://``).
        mode: ``"serverless"`` or ``"standard"`` (see :func:`nbdeploy.manifests`).
        canary: Percent of traffic for the new model, or ``None``.
        namespace: The service's namespace (default: this pod's).
        apply: ``False`` writes the files and touches no cluster.

    Returns:
        The ``InferenceService`` (as applied, or as it would be).
    """
    import yaml

    from . import cluster

    if mode not in MODES:
        raise ConfigError(f"mode must be 'serverless' or 'standard', not {mode!r}")
    chosen: Mode = "standard" if mode == "standard" else "serverless"
    where = namespace or cluster.current_namespace()
    current = cluster.read_inference_service(name, where) if apply else None
    service = write_release(candidate, repository, name=name, storage_uri=storage_uri_for(
        storage_uri), mode=chosen, canary=canary, namespace=where, current=current)  # fmt: skip
    Path(service_file).parent.mkdir(parents=True, exist_ok=True)
    Path(service_file).write_text(yaml.safe_dump(service, sort_keys=False))
    if apply:
        patch = merge_patch(service, current) if current is not None else None
        outcome = cluster.apply_inference_service(service, patch, where)
        log.info("%s InferenceService %s/%s", outcome, where, name)
    return service
