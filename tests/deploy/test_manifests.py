"""Kubernetes and KServe manifests, validated offline: core kinds against the Kubernetes
schemas (kubernetes-validate), the InferenceService against KServe's CRD structure, and
the alert expressions against the metric names our server really exports."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import nbdeploy as nbd
from nbdeploy.deploy.manifests import Autoscale
from tests.deploy import kserve_schema
from tests.servers import Endpoint, affine

K8S = "1.30.0"


def test_triton_deployment_service_hpa_and_alerts_validate(tmp_path: Path) -> None:
    scaling = Autoscale(1, 5, cpu_percent=60)
    made = nbd.manifests(affine(), storage_uri="s3://bucket/models", name="digits",
                         autoscale=scaling, gpu=True, namespace="ml")  # fmt: skip
    kinds = [o["kind"] for o in made.objects]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler", "PrometheusRule"]
    for obj in made.objects[:3]:
        kubernetes_validate.validate(obj, K8S, strict=True)
    deployment = made.objects[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--model-repository=s3://bucket/models" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {p["containerPort"] for p in container["ports"]} == {8000, 8001, 8002}
    assert all(o["metadata"]["namespace"] == "ml" for o in made.objects)
    files = made.save(tmp_path)
    assert [f.name for f in files][-1] == "prometheus-rules.yaml"
    assert list(yaml.safe_load_all(made.yaml)) == made.objects
    assert yaml.safe_load(files[-1].read_text())["groups"][0]["rules"][0]["alert"]
    assert "HorizontalPodAutoscaler" in made._repr_html_()


def test_queue_time_autoscaling_uses_tritons_metric() -> None:
    made = nbd.manifests(affine(), storage_uri="gs://b/m", autoscale=Autoscale(2, 6, queue_us=500))
    hpa = made.objects[2]
    kubernetes_validate.validate(hpa, K8S, strict=True)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nv_inference_queue_duration_us"


MODE = "serving.kserve.io/deploymentMode"


def test_serverless_canary_is_canary_traffic_percent_and_fits_the_crd() -> None:
    made = nbd.manifests(affine(), target="kserve", storage_uri="s3://bucket/models/affine",
                         canary=10, autoscale=Autoscale(1, 3))  # fmt: skip
    service = made.objects[0]
    assert service["kind"] == "InferenceService"
    assert service["metadata"]["annotations"] == {MODE: "Knative"}  # the default mode
    assert kserve_schema.problems(service) == []
    predictor = service["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10 and predictor["maxReplicas"] == 3
    assert predictor["model"]["modelFormat"] == {"name": "onnx"}
    assert predictor["model"]["storageUri"] == "s3://bucket/models/affine"
    assert "canary" not in service["spec"]
    assert kserve_schema.problems({"spec": {"predictor": {"canaryPercent": 5}}}) == [
        "spec.predictor.canaryPercent: not a field of V1beta1PredictorSpec"
    ]  # the check can fail


def test_standard_canary_is_a_canary_entry_beside_the_stable_predictor() -> None:
    made = nbd.manifests(affine(), target="kserve", mode="standard", canary=20,
                         storage_uri="s3://b/affine/v2", stable_uri="s3://b/affine/v1",
                         autoscale=Autoscale(2, 4))  # fmt: skip
    service = made.objects[0]
    assert service["metadata"]["annotations"] == {MODE: "Standard"}
    assert kserve_schema.problems(service) == []
    predictor = service["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor  # KServe 0.20 ignores it in Standard mode
    assert predictor["model"]["storageUri"] == "s3://b/affine/v1"
    assert predictor["minReplicas"] == 2 and predictor["maxReplicas"] == 4
    [canary] = service["spec"]["canary"]
    assert canary["trafficPercent"] == 20
    assert canary["predictor"]["name"] == "canary"
    assert canary["predictor"]["model"]["storageUri"] == "s3://b/affine/v2"
    # KServe's webhook refuses autoscaling fields on a canary predictor (fixed replicas).
    autoscaling = {"maxReplicas", "scaleMetric", "scaleTarget", "autoScaling"}
    assert not autoscaling & set(canary["predictor"])
    # The check reads list items too: a misspelt field inside spec.canary is caught.
    assert kserve_schema.problems({"spec": {"canary": [{"percent": 5}]}}) == [
        "spec.canary[0].percent: not a field of V1beta1CanarySpec"
    ]


def test_standard_without_canary_is_one_predictor_with_the_mode_annotation() -> None:
    made = nbd.manifests(affine(), target="kserve", mode="standard", storage_uri="s3://b/m")
    service = made.objects[0]
    assert service["metadata"]["annotations"] == {MODE: "Standard"}
    assert kserve_schema.problems(service) == []
    assert set(service["spec"]) == {"predictor"}
    assert "canaryTrafficPercent" not in service["spec"]["predictor"]


def test_alerts_use_metric_names_the_local_server_exports(local: Endpoint) -> None:
    made = nbd.manifests(affine(), storage_uri="s3://b/m", name="affine")
    exported = urllib.request.urlopen(f"http://{local.http}/metrics").read().decode()
    for rule in made.rules["groups"][0]["rules"]:
        for metric in re.findall(r"\b(nv_[a-z_]+)\{", rule["expr"]):
            assert f'{metric}{{model="affine"' in exported, metric


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Not_A_Name"}, "not a Kubernetes name"),
        ({"canary": 10}, "need target='kserve'"),
        ({"mode": "standard"}, "need target='kserve'"),
        ({"target": "kserve", "mode": "raw"}, "mode must be 'serverless'"),
        ({"target": "kserve", "mode": "standard", "canary": 10}, "pass stable_uri="),
        ({"target": "kserve", "canary": 10, "stable_uri": "s3://b/v1"}, "is for mode='standard'"),
        ({"target": "kserve", "mode": "standard", "stable_uri": "s3://b/v1"}, "only goes with"),
        ({"target": "nomad"}, "target must be 'triton' or 'kserve'"),
        ({"replicas": 0}, "at least 1"),
        ({"target": "kserve", "canary": 150}, "between 0 and 100"),
    ],
)
def test_mistakes_say_what_to_do(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(nbd.ConfigError, match=message):
        nbd.manifests(affine(), storage_uri="s3://b/m", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(nbd.ConfigError, match="min_replicas"):
        Autoscale(3, 2)
