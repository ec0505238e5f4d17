"""Where a model goes is data: targets parsed once, one deploy() for all of them, and the
pipeline %deploy, the studio and the demo run."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbdeploy as nbd
from nbdeploy.pipeline import Deploy, Export, Optimize, Quantize, build_pipeline
from nbdeploy.quantization.schemes import Float16
from nbdeploy.targets import (
    Deployed,
    FolderTarget,
    LocalTarget,
    TritonTarget,
    deploy,
    parse_target,
)
from tests.servers import affine


def test_parse_target(tmp_path: Path) -> None:
    assert parse_target(None) == parse_target("") == LocalTarget()
    assert parse_target(None, repository=str(tmp_path)) == LocalTarget(tmp_path)
    assert parse_target("triton:8000") == TritonTarget("triton:8000", "http")
    assert parse_target("http://triton:8000/") == TritonTarget("triton:8000", "http")
    assert parse_target("grpc://10.0.0.2:8001") == TritonTarget("10.0.0.2:8001", "grpc")
    assert parse_target("repo/") == FolderTarget(Path("repo"))
    assert parse_target(tmp_path) == FolderTarget(tmp_path)
    assert parse_target(str(tmp_path)) == FolderTarget(tmp_path)
    folder = FolderTarget(tmp_path)
    assert parse_target(folder) is folder
    for bad in ("ftp://host:1", "triton", "triton:http", "://:"):
        with pytest.raises(nbd.ConfigError, match="host:port"):
            parse_target(bad)


def test_deploy_into_a_folder_and_refusals(tmp_path: Path) -> None:
    written = deploy(affine(), tmp_path / "repo", name="affine")
    assert isinstance(written, Deployed) and isinstance(written, nbd.PushResult)
    assert (written.name, written.version) == ("affine", 1)
    assert (tmp_path / "repo" / "affine" / "1" / "model.onnx").is_file()
    assert deploy(affine(), FolderTarget(tmp_path / "repo")).version == 2
    with pytest.raises(nbd.ConfigError, match="canary works on the local server"):
        deploy(affine(), "triton:8000", canary=10)
    with pytest.raises(nbd.ConfigError, match=r"nbd\.serve serves locally"):
        nbd.push(affine(), LocalTarget())


def test_a_pipeline_is_checked_before_anything_runs() -> None:
    model = affine().onnx
    for kwargs, message in [
        ({"scheme": "int9-magic"}, "unknown quantization scheme"),
        ({"scheme": "int8-static"}, "needs calibration inputs"),
        ({"target": "repo/", "canary": 10}, "canary works on the local server"),
        ({"target": "ftp://x:1"}, "host:port"),
    ]:
        with pytest.raises(nbd.ConfigError, match=message):
            build_pipeline(model, None, name="m", **kwargs)


def test_a_pipeline_runs_its_typed_steps(tmp_path: Path) -> None:
    plan = build_pipeline(affine().onnx, None, name="affine", scheme="fp16",
                          target=tmp_path / "repo")  # fmt: skip
    assert plan.steps == (Export(plan.steps[0].model, None, "affine"), Optimize(),
                          Quantize(Float16()))  # fmt: skip
    assert plan.deploy == Deploy(FolderTarget(tmp_path / "repo"), "affine")
    assert plan.labels() == ["export", "optimize", "quantize", "push"]
    seen: list[str] = []
    result = plan.run(on_step=seen.append)
    assert seen == plan.labels()
    assert list(result.made) == ["export", "optimize", "quantize"]
    assert result.artifact is result.made["quantize"]
    assert list(result.seconds) == plan.labels() and all(t >= 0 for t in result.seconds.values())
    assert isinstance(result.deployed, nbd.PushResult) and result.deployed.version == 1
    dry = build_pipeline(affine().onnx, None, name="affine", optimize=False, dry_run=True)
    assert dry.labels() == ["export"] and dry.run().deployed is None


def test_cheap_mistakes_are_reported_before_anything_slow_runs(tmp_path: Path) -> None:
    model = object()  # not a model: had export run, each case would be an UnsupportedModelError
    for kwargs, error, message in [
        ({"canary": 150}, nbd.ConfigError, "between 0 and 100"),
        ({"canary": 0}, nbd.ConfigError, "between 0 and 100"),
        ({"version": 0}, nbd.ConfigError, "version must be 1 or more"),
        ({"target": "127.0.0.1:9"}, nbd.PushError, "cannot reach Triton at 127.0.0.1:9"),
    ]:
        with pytest.raises(error, match=message):
            build_pipeline(model, None, name="m", **kwargs)
    with pytest.raises(nbd.ConfigError, match="invalid model name"):
        build_pipeline(model, None, name="../m")
    assert build_pipeline(model, None, name="m", target=tmp_path / "new" / "repo").deploy
    assert (tmp_path / "new" / "repo").is_dir()
