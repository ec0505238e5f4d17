"""The typed row of a Comparison: attributes first, and the dict it used to be on demand."""

from __future__ import annotations

import dataclasses

import pytest

import nbdeploy as nbd
from nbdeploy.bench.results import Comparison, ComparisonRow


def measured(variant: str = "mlp", **values: object) -> ComparisonRow:
    fields: dict[str, object] = {
        "variant": variant, "provider": "cpu", "batch_size": 1, "metric_name": "accuracy",
        "metric": 97.5, "top1_agreement": 100.0, "max_abs_diff": 0.0, "p50_ms": 0.03,
        "p95_ms": 0.04, "p99_ms": 0.05, "throughput": 30000.0, "size_bytes": 4096,
        "memory_mb": 1.5, "note": "",
    }  # fmt: skip
    return ComparisonRow(**(fields | values))


SKIPPED = ComparisonRow(variant="mlp", provider="cuda", batch_size=1, metric_name="accuracy",
                        skipped="CUDAExecutionProvider is not in this build")  # fmt: skip


def test_attributes_are_typed_values() -> None:
    row = measured()
    assert (row.variant, row.provider, row.batch_size) == ("mlp", "cpu", 1)
    assert row.metric_name == "accuracy" and row.metric == 97.5 and row.skipped is None
    assert SKIPPED.p50_ms is None and SKIPPED.metric is None and SKIPPED.skipped


def test_indexing_answers_the_old_keys_including_the_metric_by_name() -> None:
    row = measured()
    assert row["variant"] == "mlp" and row["p50_ms"] == 0.03 and row["size_bytes"] == 4096
    assert row["accuracy"] == 97.5 and row.get("accuracy") == 97.5
    assert "accuracy" in row and "skipped" not in row and "metric_name" not in row
    assert row.get("skipped") is None and row.get("mse", "none") == "none"
    with pytest.raises(KeyError, match="mse"):
        row["mse"]
    assert SKIPPED["skipped"] == SKIPPED.skipped and "skipped" in SKIPPED
    with pytest.raises(KeyError):
        SKIPPED["p50_ms"]  # a skipped row had no measurements, as its dict did not


def test_to_dict_is_the_old_dict_and_round_trips() -> None:
    row = measured(top1_agreement=None, metric=None)
    # No top1_agreement where it was not computed; the metric is there, None without labels.
    assert list(row.to_dict()) == [
        "variant", "provider", "batch_size", "accuracy", "max_abs_diff", "p50_ms", "p50_low_ms",
        "p50_high_ms", "stable", "p95_ms", "p99_ms", "throughput", "size_bytes", "memory_mb",
        "note",
    ]  # fmt: skip
    assert row.to_dict()["accuracy"] is None
    assert SKIPPED.to_dict() == {
        "variant": "mlp", "provider": "cuda", "batch_size": 1,
        "skipped": "CUDAExecutionProvider is not in this build",
    }  # fmt: skip
    full = measured()
    back = dict(full.to_dict())
    value = back.pop("accuracy")
    assert ComparisonRow(metric_name="accuracy", metric=value, **back) == full


def test_rows_are_frozen() -> None:
    row = measured()
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.p50_ms = 0.0
    with pytest.raises(TypeError):
        row["p50_ms"] = 0.0
    assert dataclasses.replace(row, p50_ms=0.01).p50_ms == 0.01 and row.p50_ms == 0.03


def test_a_comparison_of_typed_rows() -> None:
    slow, fast = measured("mlp", p50_ms=0.05), measured("mlp [fp16]", metric=97.2, p50_ms=0.02)
    worse = measured("mlp [int4]", metric=90.0, p50_ms=0.01)
    cmp = Comparison([slow, fast, worse, SKIPPED], "accuracy", True,
                     variants={"mlp": "fp32-artifact", "mlp [fp16]": "fp16-artifact"})  # fmt: skip
    assert cmp.measured == [slow, fast, worse] and cmp.skipped == [SKIPPED]
    assert cmp.best() is fast and cmp.best(metric_drop=10) is worse
    assert cmp.best(provider="x") is None
    assert cmp.artifact(fast) == "fp16-artifact"
    assert cmp.artifact({"variant": "mlp"}) == "fp32-artifact"  # a row's to_dict() works too
    with pytest.raises(nbd.ConfigError, match="no artifact for variant 'mlp \\[int4\\]'"):
        cmp.artifact(worse)
    assert cmp.to_dict()["rows"] == [r.to_dict() for r in cmp.rows]
    lines = str(cmp).splitlines()
    assert lines[0] == "batch size 1"
    assert lines[1].split(" | ")[:4] == ["variant", "provider", "accuracy", "top-1 agreement"]
    assert lines[3].startswith("★ mlp [fp16] | cpu | 97.2% | 100% | 0 | 0.02 ms |")
    assert "4.1 kB" in lines[3] and "30,000/s" in lines[3]  # units, not raw numbers
    assert lines[5].startswith("chosen: mlp [fp16]: fastest beyond the noise (0.02 ms vs mlp")
    assert lines[-1] == "skipped on cuda: CUDAExecutionProvider is not in this build"
    html = cmp._repr_html_()
    assert '<td data-v="97.5" class="best">97.5%</td>' in html
    assert '<td data-v="0.01" class="best">0.01 ms</td>' in html


def test_the_placement_is_in_the_dict_where_it_was_read() -> None:
    row = measured(placement="OpenVINO 9/12 in 2 subgraphs · CPU 3", nodes_on_provider=9,
                   nodes_total=12, provider="openvino")  # fmt: skip
    shown = row.to_dict()
    assert list(shown)[-4:] == ["placement", "nodes_on_provider", "nodes_total", "note"]
    assert (shown["nodes_on_provider"], shown["nodes_total"]) == (9, 12)
    back = dict(shown)
    value = back.pop("accuracy")
    assert ComparisonRow(metric_name="accuracy", metric=value, **back) == row
    assert "placement" not in measured().to_dict()  # not read (a source model's row)
