"""The scheduler in front of one model version, with Triton's dynamic batching semantics.

``instances`` workers take requests off one queue. With ``dynamic_batching`` on, a
worker merges whatever else is already waiting (same per-item shapes) into its run, up
to ``max_batch_size``; with ``max_queue_delay_microseconds`` it waits that long for a
``preferred_batch_size`` (or the largest batch) before it runs. Merged inputs are
concatenated along the batch axis and the outputs split back per request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from . import config as cfg
from .stats import VersionStats

__all__ = ["Scheduler"]

# Runs shorter than this happen on the event loop itself: handing them to a thread and
# back costs more than the run (and the loop is busy no longer than a request parse).
INLINE_BELOW_NS = 100_000

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Pending:
    feed: Mapping[str, np.ndarray]
    batch: int
    future: asyncio.Future[dict[str, np.ndarray]]
    arrived_ns: int = field(default_factory=time.perf_counter_ns)
    key: tuple[object, ...] = ()  # requests with equal keys can share a run

    def __post_init__(self) -> None:
        # Computed once: the batcher compares it for every waiting request on every scan.
        self.key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(self.feed.items()))


class Scheduler:
    """Queues requests for one model version and runs them on an executor.

    Args:
        run: Runs one feed synchronously (the model runtime).
        config: The version's config (batching and instance count).
        stats: Counters to update.
        executor: Threads the runs go to.
    """

    def __init__(
        self, run: Runner, config: cfg.ModelConfig, stats: VersionStats, executor: Executor
    ) -> None:
        self._run = run
        self._stats = stats
        self._executor = executor
        self._max_batch = config.max_batch_size
        self._batching = config.HasField("dynamic_batching") and self._max_batch > 0
        batching = config.dynamic_batching
        self._delay_s = batching.max_queue_delay_microseconds / 1e6
        self._preferred = sorted(batching.preferred_batch_size) or [self._max_batch]
        self._waiting: deque[_Pending] = deque()
        self._busy = 0  # workers running a batch
        self._typical_ns = INLINE_BELOW_NS * 10  # moving average of a run; starts "slow"
        self._wakeup = asyncio.Event()
        count = sum(group.count for group in config.instance_group) or 1
        self._workers = [asyncio.create_task(self._work()) for _ in range(count)]

    async def infer(self, feed: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        """Outputs for one checked feed of ``batch`` items (0 for unbatched models)."""
        pending = _Pending(feed, batch, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        self._wakeup.set()
        return await pending.future

    async def close(self, drain_s: float = 30.0) -> None:
        """Finish what is queued and running (up to ``drain_s``), then stop the workers."""
        deadline = time.perf_counter() + drain_s
        while (self._waiting or self._busy) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._waiting:
            pending = self._waiting.popleft()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the model version was unloaded"))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            self._busy += 1
            try:
                await self._run_one(loop, await self._gather())
            finally:
                self._busy -= 1

    async def _run_one(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        started = time.perf_counter_ns()
        for pending in group:
            self._stats.queue.add(started - pending.arrived_ns)
        feed = _merge(group) if len(group) > 1 else group[0].feed
        try:
            if self._typical_ns < INLINE_BELOW_NS:
                outputs = self._run(feed)  # cheaper than the hop to a thread and back
            else:
                outputs = await loop.run_in_executor(self._executor, self._run, feed)
        except Exception as err:
            _fail(group, err)
            return
        finally:
            ns = time.perf_counter_ns() - started
            self._typical_ns = (7 * self._typical_ns + ns) // 8
            self._stats.record_execution(sum(p.batch for p in group) or 1, ns)
            self._stats.compute_infer.add(ns, len(group))
        _answer(group, outputs)

    async def _gather(self) -> list[_Pending]:
        first = self._waiting.popleft()
        if not self._batching:
            return [first]
        group, size = [first], first.batch
        key = first.key
        deadline = time.perf_counter() + self._delay_s
        while size < self._max_batch:
            size = self._take_matching(group, key, size)
            remaining = deadline - time.perf_counter()
            if size >= self._target(size) or remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                self._take_matching(group, key, size)
                break
        return group

    def _take_matching(self, group: list[_Pending], key: object, size: int) -> int:
        """Move waiting requests that fit into ``group``; return the new batch size."""
        kept: deque[_Pending] = deque()
        while self._waiting:
            pending = self._waiting.popleft()
            if pending.key == key and size + pending.batch <= self._max_batch:
                group.append(pending)
                size += pending.batch
            else:
                kept.append(pending)
        self._waiting.extendleft(reversed(kept))
        return size

    def _target(self, size: int) -> int:
        """The preferred batch size to wait for, given ``size`` items so far."""
        return int(next((p for p in self._preferred if p >= size), self._max_batch))


def _merge(group: list[_Pending]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p.feed[name] for p in group]) for name in group[0].feed}


def _answer(group: list[_Pending], outputs: dict[str, np.ndarray]) -> None:
    if len(group) == 1:
        if not group[0].future.done():
            group[0].future.set_result(outputs)
        return
    start = 0
    for pending in group:
        stop = start + pending.batch
        if not pending.future.done():
            pending.future.set_result({k: v[start:stop] for k, v in outputs.items()})
        start = stop


def _fail(group: list[_Pending], err: Exception) -> None:
    for pending in group:
        if not pending.future.done():
            pending.future.set_exception(err)
