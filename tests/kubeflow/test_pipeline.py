"""``nbd.kubeflow.pipeline`` compiles offline with kfp's own compiler; the YAML is read
back with kfp's loader and parsed strictly into the pipeline-spec protobuf (an unknown
field fails), and its IR checked: tasks, dependencies, image, parameters, caching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kfp
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import nbdeploy as nbd

IMAGE = "registry.example/nbdeploy:1.0"


def _compiled(tmp_path: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    path = tmp_path / "pipeline.yaml"
    kfp.compiler.Compiler().compile(nbd.kubeflow.pipeline(base_image=IMAGE, **options), str(path))
    assert kfp.components.load_component_from_file(str(path)).name.startswith("nbdeploy-")
    document = yaml.safe_load(path.read_text())
    json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())  # strict: no unknown field
    return document["root"], document["deploymentSpec"]["executors"]


def _deps(root: dict[str, Any]) -> dict[str, set[str]]:
    tasks = root["dag"]["tasks"]
    return {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}


def _producer(root: dict[str, Any], task: str, artifact: str) -> str:
    source = root["dag"]["tasks"][task]["inputs"]["artifacts"][artifact]["taskOutputArtifact"]
    return f"{source['producerTask']}.{source['outputArtifactKey']}"


def test_the_compiled_pipeline_runs_each_step_in_order_in_the_users_image(tmp_path: Path) -> None:
    root, executors = _compiled(tmp_path, name="digits", quantize="int8-dynamic", canary=10,
                                atol=0.05)  # fmt: skip
    assert _deps(root) == {
        "importer": set(), "importer-2": set(),   # the model file and the data rows
        "export": {"importer", "importer-2"},
        "optimize": {"export"},
        "quantize": {"optimize", "importer-2"},
        "parity": {"importer", "importer-2", "optimize", "quantize"},
        "deploy": {"parity", "quantize"},
    }  # fmt: skip
    assert _producer(root, "parity", "candidate") == "quantize.quantized"
    assert _producer(root, "parity", "previous") == "optimize.optimized"
    assert _producer(root, "parity", "model") == "importer.artifact"
    assert _producer(root, "deploy", "candidate") == "quantize.quantized"
    assert root["dag"]["tasks"]["deploy"]["cachingOptions"] == {}  # never a cached deploy
    assert root["dag"]["tasks"]["export"]["cachingOptions"] == {"enableCache": True}

    containers = [e["container"] for name, e in executors.items() if "importer" not in name]
    assert len(containers) == 5 and {c["image"] for c in containers} == {IMAGE}
    for container in containers:
        program = "\n".join(container["command"])
        assert "pip install" not in program  # the image carries nbdeploy and kfp
        assert "from nbdeploy.kubeflow import" in program

    parameters = root["inputDefinitions"]["parameters"]
    defaults = {name: p.get("defaultValue") for name, p in parameters.items()}
    assert defaults == {
        "model_uri": None, "data_uri": None, "name": "digits", "scheme": "int8-dynamic",
        "mode": "serverless", "canary": 10.0, "storage_uri": "", "namespace": "",
        "kind": "auto", "atol": 0.05, "rtol": 0.001, "apply": True,
    }  # fmt: skip
    assert parameters["model_uri"]["parameterType"] == "STRING"
    assert parameters["canary"]["parameterType"] == "NUMBER_DOUBLE"


def test_without_a_scheme_there_is_no_quantize_step(tmp_path: Path) -> None:
    root, _ = _compiled(tmp_path, name="digits", mode="standard")
    assert "quantize" not in _deps(root) and "scheme" not in root["inputDefinitions"]["parameters"]
    assert _producer(root, "parity", "candidate") == "optimize.optimized"
    assert _producer(root, "parity", "previous") == "export.exported"
    assert _producer(root, "deploy", "candidate") == "optimize.optimized"
    assert root["inputDefinitions"]["parameters"]["mode"]["defaultValue"] == "standard"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "raw"}, "mode must be 'serverless' or 'standard'"),
        ({"canary": 150}, "between 0 and 100"),
        ({"name": "Digits_v2"}, "not a Kubernetes name"),
    ],
)
def test_a_pipeline_kserve_cannot_run_is_refused_when_built(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(nbd.ConfigError, match=message):
        nbd.kubeflow.pipeline(base_image=IMAGE, **options)
