"""The deploy step's decisions against the InferenceService already in the cluster, given
as the manifest nbdeploy itself wrote for the previous release (plain data: the create
or patch call that would send the result is the one thing not run here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nbdeploy as nbd
from nbdeploy.deploy.kserve import Mode
from nbdeploy.kubeflow import rollout, steps
from tests.deploy import kserve_schema
from tests.servers import affine


def _previous(mode: Mode, uri: str = "s3://b/digits/run-1") -> dict[str, Any]:
    made = nbd.manifests(affine(), target="kserve", name="digits", storage_uri=uri, mode=mode)
    service: dict[str, Any] = made.objects[0]
    return service


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    steps.save_artifact(affine(), tmp_path / "candidate")
    return tmp_path / "candidate"


def test_standard_canary_serves_beside_what_the_cluster_serves(
    candidate: Path, tmp_path: Path
) -> None:
    service = rollout.write_release(candidate, tmp_path / "repo", name="digits",
                                    storage_uri="s3://b/digits/run-2", mode="standard",
                                    canary=20, current=_previous("standard"))  # fmt: skip
    assert kserve_schema.problems(service) == []
    assert service["spec"]["predictor"]["model"]["storageUri"] == "s3://b/digits/run-1"
    [canary] = service["spec"]["canary"]
    assert canary["trafficPercent"] == 20
    assert canary["predictor"]["model"]["storageUri"] == "s3://b/digits/run-2"
    assert (tmp_path / "repo/digits/1/model.onnx").is_file()


def test_a_first_standard_release_takes_all_traffic(candidate: Path, tmp_path: Path) -> None:
    service = rollout.write_release(candidate, tmp_path / "repo", name="digits",
                                    storage_uri="s3://b/digits/run-1", mode="standard",
                                    canary=20, current=None)  # fmt: skip
    assert "canary" not in service["spec"]
    assert service["spec"]["predictor"]["model"]["storageUri"] == "s3://b/digits/run-1"


def test_the_patch_removes_the_canary_fields_the_new_release_does_not_have(
    candidate: Path, tmp_path: Path
) -> None:
    current = rollout.write_release(candidate, tmp_path / "a", name="digits",
                                    storage_uri="s3://b/run-2", mode="standard", canary=20,
                                    current=_previous("standard"))  # fmt: skip
    promoted = rollout.write_release(candidate, tmp_path / "b", name="digits",
                                     storage_uri="s3://b/run-2", mode="standard",
                                     current=current)  # fmt: skip
    patch = rollout.merge_patch(promoted, current)
    assert patch["spec"]["canary"] is None  # JSON merge patch: null deletes
    assert patch["spec"]["predictor"]["model"]["storageUri"] == "s3://b/run-2"
    serverless = _previous("serverless") | {"spec": {"predictor": {"canaryTrafficPercent": 10}}}
    plain = rollout.write_release(candidate, tmp_path / "c", name="digits",
                                  storage_uri="s3://b/run-3", current=serverless)  # fmt: skip
    patch = rollout.merge_patch(plain, serverless)
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] is None


def test_the_mode_of_a_running_service_is_kept(candidate: Path, tmp_path: Path) -> None:
    legacy = _previous("standard")
    legacy["metadata"]["annotations"] = {
        "serving.kserve.io/deploymentMode": "RawDeployment"  # the name before KServe 0.16
    }
    with pytest.raises(nbd.ConfigError, match="runs in Standard mode and KServe refuses"):
        rollout.write_release(candidate, tmp_path / "r", name="digits", storage_uri="s3://b/x",
                              mode="serverless", current=legacy)  # fmt: skip
    # A service without the annotation runs in the cluster's default mode, in its status.
    defaulted = _previous("serverless")
    del defaulted["metadata"]["annotations"]
    defaulted["status"] = {"deploymentMode": "Serverless"}
    with pytest.raises(nbd.ConfigError, match="runs in Knative mode"):
        rollout.write_release(candidate, tmp_path / "s", name="digits", storage_uri="s3://b/x",
                              mode="standard", current=defaulted)  # fmt: skip
    assert rollout.storage_uri_for("minio://mlpipeline/a") == "s3://mlpipeline/a"
    assert rollout.storage_uri_for("gs://b/a") == "gs://b/a"
