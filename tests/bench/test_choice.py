"""The choice treats latency differences inside the timing noise as ties, and breaks them
by accuracy, then size — the rows are data with controlled numbers."""

from __future__ import annotations

import dataclasses

import pytest

from nbdeploy.bench.choice import Choice
from tests.bench.rows import comparison, skipped, timed


def test_overlapping_intervals_tie_and_the_more_accurate_wins() -> None:
    fp32 = timed("fp32", 3.0, 0.3, accuracy=97.4, size=864_000)
    int8 = timed("int8", 2.9, 0.3, accuracy=97.1, size=221_000)  # faster median, in the noise
    choice = comparison(fp32, int8).choice()
    assert choice is not None and choice.row is fp32
    assert choice.reason == (
        "fp32: tie on latency within the noise (3.00 ms ±0.30 vs int8 2.90 ms ±0.30); "
        "chosen as more accurate (accuracy 97.4% vs 97.1%)"
    )
    assert choice.tied == ("fp32", "int8") and choice.excluded == ()
    assert comparison(fp32, int8).best() is fp32


def test_a_tie_at_equal_accuracy_goes_to_the_smaller_file() -> None:
    fp32 = timed("fp32", 3.0, 0.3, size=864_000)
    int8 = timed("int8", 3.05, 0.3, size=221_000)
    choice = comparison(fp32, int8).choice()
    assert choice is not None and choice.row is int8
    assert choice.reason.endswith("chosen as smaller (221 kB vs 864 kB)")
    assert comparison(fp32, int8).best() is int8


def test_clearly_faster_wins_and_the_reason_shows_both_intervals() -> None:
    fp32 = timed("fp32", 3.1, 0.2, accuracy=97.4)
    int8 = timed("int8-dynamic", 1.9, 0.1, accuracy=97.1)
    choice = comparison(fp32, int8).choice()
    assert choice is not None and choice.row is int8 and choice.tied == ("int8-dynamic",)
    assert choice.reason == (
        "int8-dynamic: fastest beyond the noise (1.90 ms ±0.10 vs fp32 3.10 ms ±0.20) "
        "at accuracy 97.1%, within 0.5 pt of fp32's 97.4%"
    )


def test_the_accuracy_constraint_still_holds_and_says_what_it_left_out() -> None:
    fp32, int8 = timed("fp32", 3.0, 0.1, accuracy=97.4), timed("int8", 2.0, 0.1, accuracy=97.2)
    int4 = timed("int4", 1.0, 0.1, accuracy=90.0)
    cmp = comparison(fp32, int8, int4)
    choice = cmp.choice()
    assert choice is not None and choice.row is int8 and choice.excluded == ("int4",)
    assert choice.reason.endswith(
        "; left out for losing more than 0.5 pt of accuracy against fp32: int4 (90%)"
    )
    assert cmp.best(metric_drop=10) is int4 and cmp.choice(10) is not None
    only = comparison(fp32, int4).choice()
    assert only is not None and only.reason.startswith(
        "fp32: the only variant accurate enough on cpu at batch 1"
    )


def test_without_labels_agreement_and_output_difference_decide_a_tie() -> None:
    # The case: kmeans-16 3 % faster by median, its outputs off by 1.46.
    fp32 = timed("fp32", 1.00, 0.05, accuracy=None)
    kmeans = timed("kmeans-16", 0.97, 0.05, accuracy=None, max_abs_diff=1.46, size=30_000)
    choice = comparison(fp32, kmeans).choice()
    assert choice is not None and choice.row is fp32
    assert choice.reason.endswith("chosen as closer to fp32 (max abs diff 0 vs 1.46)")
    worse = timed("int4", 0.5, 0.01, accuracy=None, top1_agreement=96.0)
    assert comparison(fp32, kmeans).best() is fp32
    assert comparison(fp32, worse).best() is fp32  # 4 points of agreement lost


def test_a_lower_is_better_metric() -> None:
    fp32 = timed("fp32", 2.0, 0.2, metric_name="mse", accuracy=0.010)
    fp16 = timed("fp16", 1.9, 0.2, metric_name="mse", accuracy=0.011)
    choice = comparison(fp32, fp16, higher_is_better=False).choice()
    assert choice is not None and choice.row is fp32
    assert choice.reason.endswith("chosen as more accurate (mse 0.01 vs 0.011)")
    far = timed("int8", 1.0, 0.1, metric_name="mse", accuracy=0.6)
    assert comparison(fp32, far, higher_is_better=False).best() is fp32  # 0.59 > 0.5 allowed


def test_each_batch_size_and_provider_is_chosen_on_its_own() -> None:
    rows = [timed("fp32", 3.0, 0.1), timed("fp32", 9.0, 0.1, batch=8),
            timed("int8", 2.0, 0.1), timed("int8", 12.0, 0.1, batch=8)]  # fmt: skip
    cmp = comparison(*rows)
    assert cmp.batch_sizes == [1, 8]
    assert cmp.best() is rows[2] and cmp.best(batch_size=8) is rows[1]
    gpu = timed("fp32", 1.0, provider="cuda")
    gpu_only = comparison(skipped("fp32", "cpu"), gpu)
    assert gpu_only.best() is gpu and gpu_only.best(provider="cpu") is None
    assert comparison().choice() is None


def test_unsettled_timings_make_the_choice_tentative() -> None:
    fp32 = timed("fp32", 3.0, 0.1, stable=False)
    int8 = timed("int8", 1.0, 0.1)
    choice = comparison(fp32, int8).choice()
    assert choice is not None and "timings of fp32 did not settle" in choice.reason


def test_a_choice_is_small_frozen_data_to_attach_to_a_deployment() -> None:
    choice = comparison(timed("fp32", 3.0, 0.1)).choice()
    assert isinstance(choice, Choice) and choice.variant == "fp32" and str(choice) == choice.reason
    assert choice.reason == "fp32: the only variant measured on cpu at batch 1"
    data = choice.to_dict()
    assert data["reason"] == choice.reason and data["p50_low_ms"] == pytest.approx(2.9)
    assert data["tied"] == ["fp32"] and data["metric_drop"] == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        choice.reason = "else"
