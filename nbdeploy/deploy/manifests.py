"""``nbd.manifests``: Kubernetes objects that serve a model repository beyond one machine —
Triton as a Deployment + Service (+ HorizontalPodAutoscaler), or a KServe
``InferenceService`` — with Prometheus alerts on Triton's metric names (the names the
local server exports too).

The model files are not uploaded here: write a repository with
``nbd.push(art, "some/folder")``, copy it to ``storage_uri`` (``s3://``, ``gs://``,
``pvc://``...), then apply these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Literal

from ..artifact import Artifact
from ..errors import ConfigError
from .alerts import Alerts, prometheus_rule, rule_groups
from .kserve import Mode, Rollout, inference_service
from .kubernetes import TRITON_IMAGE, triton_objects

__all__ = ["Alerts", "Autoscale", "Manifests", "check_name", "manifests"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
Object = dict[str, Any]


@dataclass(frozen=True)
class Autoscale:
    """Horizontal scaling between ``min_replicas`` and ``max_replicas``.

    Attributes:
        min_replicas: Fewest pods.
        max_replicas: Most pods.
        cpu_percent: Target CPU utilization (the default signal).
        queue_us: Instead of CPU, a target for Triton's queue time per pod (microseconds
            of ``nv_inference_queue_duration_us`` per second), served to the autoscaler by
            a Prometheus adapter.
    """

    min_replicas: int = 1
    max_replicas: int = 4
    cpu_percent: int = 70
    queue_us: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ConfigError(
                f"autoscale needs 1 <= min_replicas <= max_replicas, got "
                f"{self.min_replicas}..{self.max_replicas}"
            )


class Manifests:
    """Kubernetes objects for one model; ``.objects`` (dicts), ``.yaml``, ``.save(dir)``.

    Attributes:
        objects: The objects, in apply order.
        rules: A plain Prometheus rules file (for Prometheus without the Operator).
    """

    def __init__(self, objects: list[Object], rules: Object) -> None:
        self.objects = objects
        self.rules = rules

    @property
    def yaml(self) -> str:
        """All objects as one multi-document YAML stream (``kubectl apply -f -``)."""
        import yaml

        return str(yaml.safe_dump_all(self.objects, sort_keys=False))

    def save(self, folder: str | Path) -> list[Path]:
        """One file per object (``<kind>-<name>.yaml``) plus ``prometheus-rules.yaml``."""
        import yaml

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for obj in self.objects:
            path = out / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False))
            paths.append(path)
        rules = out / "prometheus-rules.yaml"
        rules.write_text(yaml.safe_dump(self.rules, sort_keys=False))
        return [*paths, rules]

    def __str__(self) -> str:
        return "\n".join(f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)

    def __repr__(self) -> str:
        return f"<Manifests: {', '.join(str(self).splitlines())}>"

    def _repr_html_(self) -> str:
        from .. import _html

        rows = [[o["apiVersion"], o["kind"], o["metadata"]["name"]] for o in self.objects]
        yaml_block = f"<details><summary>YAML</summary><pre>{escape(self.yaml)}</pre></details>"
        return _html.card(
            "manifests", _html.table(["apiVersion", "kind", "name"], rows) + yaml_block
        )


def check_name(name: str) -> str:
    """``name`` when it is a Kubernetes name (a DNS label).

    Raises:
        ConfigError: It is not; the message shows one that is.
    """
    if not _DNS_LABEL.match(name):
        raise ConfigError(
            f"{name!r} is not a Kubernetes name: use lowercase letters, digits and '-' "
            "(at most 63), e.g. name='digits-v2'"
        )
    return name


def manifests(
    art: Artifact,
    *,
    target: Literal["triton", "kserve"] = "triton",
    storage_uri: str,
    name: str | None = None,
    replicas: int = 1,
    canary: float | None = None,
    mode: Mode | None = None,
    stable_uri: str | None = None,
    autoscale: Autoscale | None = None,
    gpu: bool = False,
    namespace: str | None = None,
    alerts: Alerts | None = None,
    image: str = TRITON_IMAGE,
) -> Manifests:
    """Kubernetes manifests that serve ``art`` (already in a repository at ``storage_uri``).

    Args:
        art: The artifact (its name and format pick defaults).
        target: ``"triton"`` (Deployment, Service, HPA running Triton on the repository)
            or ``"kserve"`` (an ``InferenceService`` on KServe's Triton runtime).
        storage_uri: Where the model repository lives (``s3://bucket/models``...).
        name: Kubernetes name (default: the artifact's name); a DNS label.
        replicas: Pods (the minimum when autoscaling).
        canary: KServe only: percent of traffic for the new model.
        mode: KServe's deployment mode, written as the annotation
            ``serving.kserve.io/deploymentMode``: ``"serverless"`` (the default: KServe
            0.20's own install manifests and Helm chart set ``defaultDeploymentMode`` to
            Serverless/Knative) runs on Knative and takes the canary as
            ``canaryTrafficPercent``, Knative keeping the previous revision;
            ``"standard"`` runs plain Deployments and takes the canary (KServe 0.20 and
            later) as a ``spec.canary`` entry beside the stable predictor, which needs
            ``stable_uri`` (KServe 0.20.0 runs that canary but weights traffic to it only
            from the release after; see docs/beyond-one-machine.md).
        stable_uri: ``mode="standard"`` with ``canary``: the storage URI of the model
            serving now, which keeps ``100 - canary`` percent of the traffic.
        autoscale: Scale between bounds on CPU (or Triton's queue time).
        gpu: Request one NVIDIA GPU per pod.
        namespace: Namespace for every object.
        alerts: Thresholds of the error-rate and p99-latency alerts.
        image: Triton's container image (``target="triton"``).

    Raises:
        ConfigError: a name that is not a DNS label, a canary or mode for plain Triton, a
            mode-specific argument in the other mode, bad bounds.
    """
    name = check_name(name or art.name)
    if replicas < 1:
        raise ConfigError(f"replicas must be at least 1, not {replicas}")
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "nbdeploy"}
    if target == "triton":
        if canary is not None or mode is not None or stable_uri is not None:
            raise ConfigError(
                "canary, mode and stable_uri need target='kserve' (KServe splits traffic "
                "between models); plain Deployments cannot"
            )
        objects = triton_objects(meta, labels, storage_uri, replicas, autoscale, gpu, image)
    elif target == "kserve":
        rollout = Rollout(mode or "serverless", canary, stable_uri)
        objects = [
            inference_service(art, meta, labels, storage_uri, replicas, rollout, autoscale, gpu)
        ]
    else:
        raise ConfigError(f"target must be 'triton' or 'kserve', not {target!r}")
    rules = rule_groups(name, alerts or Alerts())
    objects.append(prometheus_rule(meta, labels, rules))
    return Manifests(objects, {"groups": rules})
