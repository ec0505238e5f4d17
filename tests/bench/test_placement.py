"""Where onnxruntime put the nodes: read from its record of the partitioning, shown per
row, and completed where that record misses nodes (no mocks: real sessions, or rows as
data)."""

from __future__ import annotations

import pytest

import nbdeploy as nbd
from nbdeploy.bench import placement
from nbdeploy.bench.placement import Placement
from nbdeploy.bench.providers import session_for
from tests import onnx_models
from tests.bench.rows import timed


@pytest.fixture(scope="module")
def convnet() -> nbd.Artifact:
    return nbd.export(onnx_models.convnet(), name="convnet")


def test_the_text_says_where_and_how_many() -> None:
    assert str(Placement("cpu", {"cpu": 6})) == "CPU 6/6"
    whole = Placement("openvino", {"openvino": 12}, {"openvino": 1})
    assert str(whole) == "OpenVINO 12/12 in 1 subgraph" and whole.fell_back == 0
    split = Placement("openvino", {"openvino": 9, "cpu": 3}, {"openvino": 2})
    assert str(split) == "OpenVINO 9/12 in 2 subgraphs · CPU 3"
    assert (split.on_provider, split.total, split.fell_back) == (9, 12, 3)
    profiled = Placement("cuda", {"cuda": 4, "cpu": 1}, counted="profile")
    assert str(profiled) == "CUDA 4/5 · CPU 1 (profiled)"


def test_a_short_record_is_completed_on_the_cpu_which_ran_the_rest() -> None:
    short = Placement("cpu", {"cpu": 3})
    assert str(short.completed(12)) == "CPU 12/12 (9 placed after partitioning)"
    assert short.completed(3) is short
    other = Placement("openvino", {"openvino": 10}, {"openvino": 1}).completed(12)
    assert str(other) == "OpenVINO 10/12 in 1 subgraph · CPU 2 (2 placed after partitioning)"
    rows = [timed("m [fp16]", 1.0, provider=p) for p in ("cpu", "openvino")]
    whole = Placement("openvino", {"openvino": 12}, {"openvino": 1})
    recorded = {("m [fp16]", "cpu"): short, ("m [fp16]", "openvino"): whole}
    rows = [placement.placed(r, recorded[r.variant, r.provider]) for r in rows]
    cpu, openvino = placement.complete_rows(rows, recorded)
    assert (cpu.placement, cpu.nodes_on_provider, cpu.nodes_total) == (
        "CPU 12/12 (9 placed after partitioning)", 12, 12)  # fmt: skip
    assert openvino is rows[1]


def test_the_fallback_note_is_said_again_for_the_completed_count() -> None:
    short = Placement("openvino", {"openvino": 10}, {"openvino": 1})
    row = placement.placed(timed("m", 1.0, provider="openvino", note="runs varied."), short)
    done = placement.complete_rows([row], {("m", "openvino"): short, ("m", "cpu"): Placement(
        "cpu", {"cpu": 12})})  # fmt: skip
    assert done[0].note == "2 of 12 nodes fell back to the CPU (a slowdown source). runs varied."


def test_a_real_session_records_every_node_on_the_cpu(convnet: nbd.Artifact) -> None:
    where = placement.from_session(session_for(convnet, "cpu"), "cpu")
    assert where == Placement("cpu", {"cpu": 5})  # node by node: no fused subgraphs


def test_compare_shows_the_placement_in_every_form(convnet: nbd.Artifact) -> None:
    variants = [convnet, nbd.quantize(convnet, "int8-weight-symmetric")]
    cmp = nbd.compare(variants, progress=False, repeat=2, max_runs=3)
    fp32, int8 = cmp.rows
    assert (fp32.placement, fp32.nodes_on_provider, fp32.nodes_total) == ("CPU 5/5", 5, 5)
    # The weight-only model's DequantizeLinear nodes fold into float weights at load time
    # (session.disable_quant_qdq), before onnxruntime partitions: the same 5 nodes run.
    assert int8.placement == "CPU 5/5" and len(variants[1].onnx.graph.node) > 5
    assert "nodes on provider" in str(cmp)
    assert '<td data-s="CPU 5/5">CPU 5/5</td>' in cmp.to_html()
    assert cmp.to_dict()["rows"][0]["placement"] == "CPU 5/5"
    assert "placement,nodes_on_provider,nodes_total" in cmp.to_csv().splitlines()[0]
