"""Prometheus alerts on Triton's metric names (which the local server exports too):
error rate and p99 latency, as a PrometheusRule and as a plain rules file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Alerts", "prometheus_rule", "rule_groups"]

Object = dict[str, Any]


@dataclass(frozen=True)
class Alerts:
    """Thresholds of the Prometheus alerts.

    Attributes:
        error_rate: Share of failed requests over 5 minutes that fires an alert.
        p99_ms: 99th-percentile request latency that fires an alert.
    """

    error_rate: float = 0.05
    p99_ms: float = 500.0


def rule_groups(name: str, alerts: Alerts) -> list[Object]:
    model = f'model="{name}"'
    failures = f"sum(rate(nv_inference_request_failure{{{model}}}[5m]))"
    successes = f"sum(rate(nv_inference_request_success{{{model}}}[5m]))"
    p99 = f'max(nv_inference_request_summary_us{{{model},quantile="0.99"}})'
    return [
        {
            "name": f"nbdeploy-{name}",
            "rules": [
                {
                    "alert": "NbdeployHighErrorRate",
                    "expr": f"{failures} / ({failures} + {successes}) > {alerts.error_rate}",
                    "for": "5m",
                    "labels": {"severity": "warning", "model": name},
                    "annotations": {
                        "summary": f"More than {alerts.error_rate:.0%} of requests to {name} fail"
                    },
                },
                {
                    "alert": "NbdeployHighP99Latency",
                    "expr": f"{p99} > {alerts.p99_ms * 1000:g}",
                    "for": "10m",
                    "labels": {"severity": "warning", "model": name},
                    "annotations": {"summary": f"p99 latency of {name} above {alerts.p99_ms:g} ms"},
                },
            ],
        }
    ]


def prometheus_rule(meta: Object, labels: dict[str, str], groups: list[Object]) -> Object:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {**meta, "labels": labels},
        "spec": {"groups": groups},
    }
