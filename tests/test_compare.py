from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy.bench.plot import pareto_front
from tests.graph import helpers

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def classifier() -> nbd.Artifact:
    return helpers.classifier()


def test_rows_per_variant_and_provider_with_gpu_skipped(classifier, tmp_path: Path) -> None:
    q = nbd.quantize(classifier, "int8-weight-symmetric")
    x = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    y = classifier.run(x)["scores"].argmax(1)  # labels the fp32 model gets right by design
    cmp = nbd.compare([classifier, q], data=(x, y), providers=["cpu", "cuda", "tensorrt"],
                      batch_sizes=(1, 8), progress=False, repeat=2)  # fmt: skip
    assert len(cmp.rows) == 2 * 3 * 2
    assert len(cmp.skipped) == 2 * 2 * 2
    assert all("not in this onnxruntime build" in r["skipped"] for r in cmp.skipped)
    fp32, int8 = cmp.measured[0], cmp.measured[2]
    assert fp32["accuracy"] == 100.0 and fp32["top1_agreement"] == 100.0
    assert int8["accuracy"] > 90 and int8["size_bytes"] < fp32["size_bytes"]
    for row in cmp.measured:
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["throughput"] > 0
        assert row.p50_low_ms <= row.p50_ms <= row.p50_high_ms and isinstance(row.stable, bool)
        assert row.stable or "not stable" in row.note  # an unsettled timing says so
    assert cmp.best(metric_drop=100)["provider"] == "cpu"
    assert cmp.artifact(cmp.measured[2]) is q and cmp.artifact(fp32) is classifier
    with pytest.raises(nbd.ConfigError, match="no artifact for variant 'nope'"):
        cmp.artifact({"variant": "nope"})
    html = cmp._repr_html_()
    assert 'class="best"' in html and html.count("skipped on cuda: CUDAExecutionProvider") == 1
    # The sweep (1, 8): a table and a choice per batch size, in every form of the report.
    assert cmp.batch_sizes == [1, 8] and html.count('<table class="nbd-sort">') == 2
    assert "batch size 8" in str(cmp) and str(cmp).count("\nchosen: ") == 2
    at_8 = cmp.choice(batch_size=8)
    assert at_8 is not None and at_8.row.batch_size == 8 and at_8.reason in cmp.to_html()
    assert cmp.to_csv().count("\n") == 1 + 12 and "p50_low_ms,p50_high_ms" in cmp.to_csv()
    figure = cmp.plot()
    figure.savefig(tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    assert cmp.to_dict()["metric"] == "accuracy" and len(cmp.to_pandas()) == 12
    # The quantized variant answers differently: its note says where it drifts most.
    drift = cmp.activations(q.variant)
    assert set(cmp.drifts) == {q.variant} and drift is cmp.drifts[q.variant]
    worst = drift.worst(1)[0]
    assert f"drifts most at {worst.nodes}" in int8.note and worst.nodes in html
    assert "drifts" not in fp32.note
    again = cmp.activations(q.variant, data=x[:4])
    assert again is not drift and "4 rows" in again.data


def test_without_labels_agreement_still_compares(classifier) -> None:
    cmp = nbd.compare([classifier, nbd.quantize(classifier, "fp16")], progress=False, repeat=2)
    assert all(r["accuracy"] is None for r in cmp.measured)
    assert cmp.measured[1]["max_abs_diff"] < 0.1


def test_metric_functions_and_errors(classifier) -> None:
    x = np.random.default_rng(2).standard_normal((50, 20)).astype(np.float32)
    target = classifier.run(x)["scores"]
    cmp = nbd.compare([classifier], data=(x, target), metric="mse", progress=False, repeat=2)
    assert cmp.measured[0]["mse"] == 0.0 and not cmp.higher_is_better
    with pytest.raises(nbd.ConfigError, match="unknown provider 'gpu'"):
        nbd.compare([classifier], providers=["gpu"])
    with pytest.raises(nbd.ConfigError, match="unknown metric 'f1'"):
        nbd.compare([classifier], metric="f1")


def test_pareto_front_by_hand() -> None:
    points = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0)]
    assert pareto_front(points, higher_is_better=True) == [3, 0, 1]


def test_node_placement_is_read_from_an_onnxruntime_profile(classifier) -> None:
    from nbdeploy.bench.placement import from_profile
    from nbdeploy.bench.providers import kernel_events

    feed = {"x": np.zeros((2, 20), np.float32)}
    where = from_profile("cpu", kernel_events(classifier, "cpu", feed))
    assert where.nodes == {"cpu": 3} and str(where) == "CPU 3/3 (profiled)"  # MatMul, Relu, MatMul


def test_rows_arrive_live_and_ctrl_c_keeps_what_was_measured(classifier) -> None:  # type: ignore[no-untyped-def]
    variants = [
        classifier,
        nbd.quantize(classifier, "fp16"),
        nbd.quantize(classifier, "int8-dynamic"),
    ]
    seen: list[str] = []

    def interrupt_after_two(row: dict[str, object]) -> None:
        seen.append(str(row["variant"]))
        if len(seen) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a comparison

    cmp = nbd.compare(variants, progress=False, repeat=2, on_row=interrupt_after_two)
    assert cmp.partial and len(cmp.rows) == 2 and seen == [r["variant"] for r in cmp.rows]
    assert "partial: interrupted" in str(cmp) and "partial" in repr(cmp)
    assert cmp.artifact(cmp.rows[1]) is variants[1]  # what was measured can still be served


def test_a_cancel_event_stops_before_the_next_measurement(classifier: nbd.Artifact) -> None:
    import threading

    stop = threading.Event()
    variants = [classifier, nbd.quantize(classifier, "fp16")]
    cmp = nbd.compare(variants, progress=False, repeat=2, cancel=stop,
                      on_row=lambda row: stop.set())  # fmt: skip
    assert cmp.partial and len(cmp.rows) == 1 and cmp.rows[0].variant == classifier.name
    assert cmp.best() is cmp.rows[0]  # what was measured can still be chosen


def test_compare_builds_typed_rows_and_passes_them_live(classifier: nbd.Artifact) -> None:
    from nbdeploy.bench.results import ComparisonRow

    x = np.random.default_rng(3).standard_normal((40, 20)).astype(np.float32)
    y = classifier.run(x)["scores"].argmax(1)
    seen: list[ComparisonRow] = []
    cmp = nbd.compare([classifier], data=(x, y), providers=["cpu", "cuda"], progress=False,
                      repeat=2, on_row=seen.append)  # fmt: skip
    assert seen == cmp.rows and all(isinstance(r, ComparisonRow) for r in seen)
    row, skipped = cmp.rows
    assert row.metric_name == "accuracy" and row.metric == row["accuracy"] == 100.0
    assert row.top1_agreement == 100.0 and row.max_abs_diff == 0.0 and row.skipped is None
    assert row.p50_ms is not None and row.size_bytes == classifier.size_bytes
    assert skipped.skipped is not None and skipped.p50_ms is None
    assert cmp.best() is row and cmp.artifact(row) is classifier


def test_a_model_kept_on_disk_is_compared(tmp_path: Path) -> None:
    """A model past 2 GiB lives on disk with external data: compare loads it from its
    file (it has no single-buffer form) — a small one held the same way stands for it."""
    import onnx

    from tests.servers import affine

    model = onnx.ModelProto()
    model.CopyFrom(affine().onnx)
    onnx.save_model(model, tmp_path / "a.onnx", save_as_external_data=True, size_threshold=0)
    on_disk = nbd.load(tmp_path / "a.onnx")
    assert on_disk.onnx_path is not None
    cmp = nbd.compare([on_disk], data=np.ones((4, 3), np.float32), progress=False, repeat=2)
    assert len(cmp.measured) == 1 and cmp.measured[0]["p50_ms"] > 0
