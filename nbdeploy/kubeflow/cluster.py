"""The one place that talks to a cluster: read, create or patch an ``InferenceService``
with the kubernetes python client, configured from inside the pod (the pipeline's
service account). Everything before these calls is plain data and tested offline;
these calls are not, as no cluster runs in the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["apply_inference_service", "current_namespace", "read_inference_service"]

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
Object = dict[str, Any]


def current_namespace() -> str:
    """The namespace this pod runs in (a pipeline run's, in Kubeflow's multi-user mode)."""
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def _api() -> Any:
    from kubernetes import client, config

    config.load_incluster_config()
    return client.CustomObjectsApi()


def read_inference_service(name: str, namespace: str) -> Object | None:
    """The ``InferenceService`` called ``name``, or ``None`` when there is none."""
    from kubernetes.client.exceptions import ApiException

    try:
        found: Object = _api().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                            name)  # fmt: skip
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return found


def apply_inference_service(service: Object, patch: Object | None, namespace: str) -> str:
    """Create ``service``, or apply ``patch`` (a JSON merge patch) to the existing one;
    returns ``"created"`` or ``"patched"``."""
    api = _api()
    name = service["metadata"]["name"]
    if patch is None:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, service)
        return "created"
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    return "patched"
