"""The Kubernetes objects themselves: Triton as a Deployment, Service and
HorizontalPodAutoscaler (the InferenceService is in ``kserve.py``). Plain dicts, validated
in tests against the Kubernetes schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manifests import Autoscale

__all__ = ["PORTS", "TRITON_IMAGE", "resources", "triton_objects"]

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, as the tests run
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
Object = dict[str, Any]


def resources(gpu: bool) -> Object:
    """CPU and memory requests and limits of one serving pod (and a GPU when asked)."""
    resources: Object = {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = 1
    return resources


def triton_objects(
    meta: Object,
    labels: dict[str, str],
    storage_uri: str,
    replicas: int,
    autoscale: Autoscale | None,
    gpu: bool,
    image: str,
) -> list[Object]:
    probe = {"periodSeconds": 10, "failureThreshold": 3}
    container = {
        "name": "tritonserver",
        "image": image,
        "args": [
            "tritonserver",
            f"--model-repository={storage_uri}",
            "--strict-readiness=true",
            "--metrics-config=summary_latencies=true",
        ],
        "ports": [{"name": n, "containerPort": p} for n, p in PORTS.items()],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "initialDelaySeconds": 5,
            **probe,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "initialDelaySeconds": 15,
            **probe,
        },
        "resources": resources(gpu),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**meta, "labels": labels},
        "spec": {
            "replicas": autoscale.min_replicas if autoscale else replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORTS["metrics"]),
                    },
                },
                "spec": {"containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**meta, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": n, "port": p, "targetPort": n} for n, p in PORTS.items()],
        },
    }
    objects: list[Object] = [deployment, service]
    if autoscale:
        objects.append(_hpa(meta, labels, autoscale))
    return objects


def _hpa(meta: Object, labels: dict[str, str], autoscale: Autoscale) -> Object:
    if autoscale.queue_us is not None:
        metric: Object = {
            "type": "Pods",
            "pods": {
                "metric": {"name": "nv_inference_queue_duration_us"},
                "target": {"type": "AverageValue", "averageValue": str(autoscale.queue_us)},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": autoscale.cpu_percent},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {**meta, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
            "minReplicas": autoscale.min_replicas,
            "maxReplicas": autoscale.max_replicas,
            "metrics": [metric],
        },
    }
