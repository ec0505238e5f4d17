"""The OpenVINO execution provider, for real: ``onnxruntime-openvino`` in a virtualenv of
its own (built once per cache, ~50 s and ~600 MB the first time), where ``nbd.compare``
runs a small classifier and its quantized variants on the CPU and OpenVINO providers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tomllib

import nbdeploy as nbd
from nbdeploy.bench import elsewhere, openvino_venv
from nbdeploy.bench.results import Comparison
from tests import onnx_models
from tests.graph import helpers

SCHEMES = ("fp16", "int8-dynamic", "int8-static", "int8-weight-symmetric")


@pytest.fixture(scope="session")
def openvino_python() -> Path:
    reason = openvino_venv.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return openvino_venv.prepare()


@pytest.fixture(scope="module")
def classifier() -> nbd.Artifact:
    return helpers.classifier()


@pytest.fixture(scope="module")
def data(classifier: nbd.Artifact) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(1).standard_normal((200, 20)).astype(np.float32)
    return x, classifier.run(x)["scores"].argmax(1)  # labels fp32 gets right by design


@pytest.mark.slow
def test_the_venv_has_openvino_and_not_the_plain_wheel(openvino_python: Path) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, onnxruntime as ort\n"
        "names = sorted(d.metadata['Name'].lower() for d in m.distributions())\n"
        "print(json.dumps({'providers': ort.get_available_providers(), 'names': names,\n"
        "                  'torch': u.find_spec('torch') is not None}))"
    )
    done = subprocess.run([str(openvino_python), "-I", "-c", probe], capture_output=True,
                          text=True, check=True)  # fmt: skip
    found = json.loads(done.stdout)
    assert found["providers"][0] == "OpenVINOExecutionProvider"
    assert "onnxruntime-openvino" in found["names"] and "onnxruntime" not in found["names"]
    assert not found["torch"]  # minimal: what nbd.compare needs, no frameworks


@pytest.mark.slow
def test_compare_runs_every_variant_on_cpu_and_openvino(
    openvino_python: Path, classifier: nbd.Artifact, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    variants = [classifier] + [nbd.quantize(classifier, s, calibration=x[:64]) for s in SCHEMES]
    cmp = elsewhere.compare_in(openvino_python, variants, data=(x, y),
                               providers=["cpu", "openvino"], repeat=2, max_runs=3)  # fmt: skip
    assert isinstance(cmp, Comparison) and not cmp.skipped
    assert [(r.variant, r.provider) for r in cmp.rows] == [
        (v.variant, p) for v in variants for p in ("cpu", "openvino")
    ]
    for row in cmp.rows:
        assert row.p50_ms is not None and row.p50_ms > 0 and row.metric is not None
        assert row.metric > 90 and row.top1_agreement is not None and row.top1_agreement > 90
        assert row.nodes_total is not None and row.nodes_on_provider == row.nodes_total
        assert cmp.artifact(row) in variants  # this side's artifacts, to serve the choice
    on_cpu, on_openvino = cmp.rows[0], cmp.rows[1]
    assert on_cpu.placement == "CPU 3/3"  # MatMul, Relu, MatMul
    assert on_openvino.placement == "OpenVINO 3/3 in 1 subgraph"  # compiled as one
    assert on_openvino.metric == 100.0 and on_openvino.max_abs_diff is not None
    assert on_openvino.max_abs_diff < 1e-3  # the same fp32 model on another runtime
    for row in cmp.rows[3::2]:  # each quantized variant, on OpenVINO: wholly there
        assert row.placement is not None and row.placement.startswith("OpenVINO ")
        assert row.placement.endswith("in 1 subgraph")
    text, table = str(cmp), cmp.to_html()
    assert "nodes on provider" in text and "OpenVINO 3/3 in 1 subgraph" in table
    shown = cmp.to_dict()["rows"][1]
    assert (shown["placement"], shown["nodes_on_provider"], shown["nodes_total"]) == (
        "OpenVINO 3/3 in 1 subgraph", 3, 3)  # fmt: skip


def test_here_openvino_is_skipped_with_how_to_get_it(classifier: nbd.Artifact) -> None:
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        pytest.skip("this environment's onnxruntime has the OpenVINO provider")
    cmp = nbd.compare([classifier], providers=["cpu", "openvino"], progress=False, repeat=2)
    measured, skipped = cmp.rows
    assert measured.placement == "CPU 3/3" and skipped.skipped is not None
    assert "onnxruntime-openvino" in skipped.skipped
    assert "virtualenv of its own" in skipped.skipped
    assert "nbdeploy.bench.openvino_venv.prepare()" in skipped.skipped


def test_the_venv_gets_the_runtime_dependencies_but_onnxruntime() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert [d for d in declared if not d.startswith("onnxruntime")] == list(openvino_venv.RUNTIME)
    assert openvino_venv.PACKAGES[0].startswith("onnxruntime-openvino==")


@pytest.mark.slow
def test_a_variant_openvino_rejects_is_a_skipped_row_with_its_error(
    openvino_python: Path,
) -> None:
    """onnxruntime-openvino 1.24.1 cannot partition a dynamically quantized convolution
    (ConvInteger): the session fails with 'the graph is not acyclic'. The comparison goes
    on and says so for that row alone."""
    fp32 = nbd.export(onnx_models.convnet(), name="convnet")
    int8 = nbd.quantize(fp32, "int8-dynamic")
    cmp = elsewhere.compare_in(openvino_python, [fp32, int8], providers=["cpu", "openvino"],
                               repeat=2, max_runs=3)  # fmt: skip
    assert [r.skipped is None for r in cmp.rows] == [True, True, True, False]
    assert cmp.rows[1].placement == "OpenVINO 5/5 in 1 subgraph"
    reason = cmp.rows[3].skipped or ""
    assert reason.startswith("onnxruntime could not run convnet [int8-dynamic] on openvino: ")
    assert "not acyclic" in reason
