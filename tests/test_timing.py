from __future__ import annotations

import time

from nbdeploy.bench.timing import Timing, time_call


def test_auto_ranging_reaches_the_minimum_run_time() -> None:
    timing = time_call(lambda: time.sleep(0.001), repeat=3, min_run_time=0.02)
    assert timing.loops in (10, 20, 50)  # 1, 2, 5, 10, ... until a run lasts 20 ms
    assert len(timing.calls) == timing.loops * 3
    assert 0.001 <= timing.p50 <= timing.p99
    assert "per call (p50" in str(timing)


def test_percentiles_and_the_varies_warning_follow_the_samples() -> None:
    steady = Timing(tuple([1.0] * 10), loops=5, runs=2, warmup=0)
    assert steady.p50 == steady.p99 == 1.0 and steady.warning is None
    wild = Timing(tuple([1.0] * 5 + [10.0] * 5), loops=5, runs=2, warmup=0)
    assert wild.percentile(0) == 1.0 and wild.p99 == 10.0
    assert wild.warning is not None and "10.0 times longer" in wild.warning
