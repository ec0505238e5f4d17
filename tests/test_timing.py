from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from nbdeploy.bench.timing import Timing, time_call


def scripted(durations: list[float]) -> tuple[Callable[[], None], Callable[[], float]]:
    """A call and a clock where the n-th call takes ``durations[n]`` seconds (the last
    one repeats): the harness's decisions become exact, with no real waiting."""
    now = [0.0]
    steps: Iterator[float] = iter(durations)
    last = [durations[-1]]

    def call() -> None:
        last[0] = next(steps, last[0])
        now[0] += last[0]

    return call, lambda: now[0]


def test_auto_ranging_reaches_the_minimum_run_time() -> None:
    timing = time_call(lambda: time.sleep(0.001), repeat=3, min_run_time=0.02)
    assert timing.loops in (10, 20, 50)  # 1, 2, 5, 10, ... until a run lasts 20 ms
    assert len(timing.calls) == timing.loops * timing.runs and 3 <= timing.runs <= 10
    assert timing.stable or timing.runs == 10  # unsettled only after the most runs
    low, high = timing.p50_interval
    assert 0.001 <= low <= timing.p50 <= high <= timing.p99
    assert "per call (p50" in str(timing) and "95% CI" in str(timing)


def test_runs_repeat_until_the_last_three_medians_agree() -> None:
    # warm-up 1 call, autorange 1 call (min_run_time=0: one call per run), then runs that
    # drift 2.0, 1.5, 1.25, 1.0 s before settling at 1.0 s.
    call, clock = scripted([9.0, 9.0, 2.0, 1.5, 1.25, 1.0, 1.0, 1.0, 1.0])
    timing = time_call(call, warmup=1, repeat=3, min_run_time=0, clock=clock)
    assert timing.loops == 1 and timing.calls == (2.0, 1.5, 1.25, 1.0, 1.0, 1.0)
    assert timing.runs == 6 and timing.stable and timing.warning is None
    assert timing.to_dict()["stable"] is True


def test_runs_that_never_agree_stop_at_max_runs_and_say_so() -> None:
    call, clock = scripted([1.0, 1.0, *[1.0 + 0.25 * (i % 2) for i in range(20)]])
    timing = time_call(call, warmup=1, min_run_time=0, max_runs=7, clock=clock)
    assert timing.runs == 7 and not timing.stable and timing.warning is not None
    assert "not stable: the last 3 runs' medians differ by 25%" in timing.warning
    assert "not stable" in str(timing)


def test_a_looser_rule_accepts_sooner_but_never_before_repeat_runs() -> None:
    # warm-up, autorange, then runs of 1.0, 1.0, 1.0, 1.25 and 1.0 from there on
    durations = [1.0, 1.0, 1.0, 1.0, 1.0, 1.25, 1.0]
    call, clock = scripted(durations)
    loose = time_call(call, warmup=1, min_run_time=0, stable_within=0.3, clock=clock)
    assert loose.stable and loose.runs == 5  # repeat=5 runs first; 25 % is within 30 %
    call, clock = scripted(durations)
    strict = time_call(call, warmup=1, min_run_time=0, clock=clock)
    assert strict.stable and strict.runs == 7  # until 1.25 leaves the last three


def test_percentiles_and_the_varies_warning_follow_the_samples() -> None:
    steady = Timing(tuple([1.0] * 15), loops=5, runs=3, warmup=0)
    assert steady.p50 == steady.p99 == 1.0 and steady.warning is None and steady.stable
    assert steady.p50_interval == (1.0, 1.0)
    wild = Timing(tuple([1.0] * 5 + [10.0] * 5), loops=5, runs=2, warmup=0)
    assert wild.percentile(0) == 1.0 and wild.p99 == 10.0 and not wild.stable
    assert wild.warning is not None and "10.0 times longer" in wild.warning
