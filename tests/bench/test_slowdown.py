"""A comparison row slower than the first artifact's says where its time goes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy.bench.rows import ComparisonRow
from nbdeploy.bench.slowdown import OpTime, explain, op_times, why_slower

torch = pytest.importorskip("torch")


def _cnn() -> nbd.Artifact:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10),
    ).eval()  # fmt: skip
    return nbd.export(model, torch.randn(4, 1, 8, 8), name="cnn", progress=False)


def test_the_reason_names_the_operators_whose_time_grew_most() -> None:
    reference = {"Conv": OpTime("Conv", 2, 30.0), "Relu": OpTime("Relu", 2, 10.0)}
    variant = {"ConvInteger": OpTime("ConvInteger", 2, 70.0), "Relu": OpTime("Relu", 2, 10.0),
               "DynamicQuantizeLinear": OpTime("DynamicQuantizeLinear", 2, 20.0)}  # fmt: skip
    assert why_slower(variant, reference, "cnn") == (
        "slower than cnn: profiled, its kernels take 100 µs a run against 40 µs, most of it "
        "ConvInteger ×2 +70 µs (new), DynamicQuantizeLinear ×2 +20 µs (new)"
    )
    grown = {"Conv": OpTime("Conv", 2, 90.0), "Relu": OpTime("Relu", 2, 10.0)}
    assert why_slower(grown, reference, "cnn").endswith("most of it Conv ×2 +60 µs")
    same = {"Conv": OpTime("Conv", 2, 30.5), "Relu": OpTime("Relu", 2, 10.0)}
    assert why_slower(same, reference, "cnn") == (
        "slower than cnn, but not in its kernels (40 µs a run against 40 µs): the "
        "difference is copies and session overhead"
    )


def test_operator_times_come_from_onnxruntimes_profiler() -> None:
    art = _cnn()
    times = op_times(art, "cpu", art.example or {})
    # as onnxruntime ran them: each Relu fused into its Conv
    assert times["Conv"].nodes == 2 and "Relu" not in times
    assert all(t.micros >= 0 for t in times.values())


def test_only_a_row_clearly_slower_than_the_first_artifact_gets_a_reason() -> None:
    art = _cnn()
    q8 = nbd.quantize(art, "int8-dynamic", progress=False)
    variants = {art.variant: art, q8.variant: q8}
    first = ComparisonRow(variant=art.variant, provider="cpu", batch_size=1,
                          metric_name="accuracy", p50_ms=0.03, p50_low_ms=0.029,
                          p50_high_ms=0.031, note="")  # fmt: skip
    slower = replace(first, variant=q8.variant, p50_ms=0.2, p50_low_ms=0.19, p50_high_ms=0.21)
    overlapping = replace(slower, p50_ms=0.031, p50_low_ms=0.030, p50_high_ms=0.032)
    feed = {"input": np.random.default_rng(0).standard_normal((1, 1, 8, 8), np.float32)}
    rows = explain([first, slower, overlapping], variants, lambda _, batch: feed)
    assert rows[0].note == "" and rows[2].note == ""  # the first; within the noise
    assert rows[1].note.startswith(f"slower than {art.variant}: profiled, its kernels take ")
    named = rows[1].note.split("most of it ")[1].split(" ×")[0]
    assert named in {node.op_type for node in q8.onnx.graph.node}
