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

from ..errors import ProtocolError
from . import config as cfg
from .stats import VersionStats

__all__ = ["QueuePolicy", "Scheduler"]

# A worker process running one instance of a version runs it on its event loop itself
# when a run is shorter than this: the hop to a thread and back costs ~50 µs of CPU (a
# fifth of a small model's request), and the loop is held no longer than a large parse.
# With several instances per process, runs go to threads so that they overlap.
INLINE_BELOW_NS = 500_000

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Pending:
    feed: Mapping[str, np.ndarray]
    batch: int
    future: asyncio.Future[dict[str, np.ndarray]]
    arrived_ns: int = field(default_factory=time.perf_counter_ns)
    key: tuple[object, ...] = ()  # requests with equal keys can share a run
    deadline_ns: int = 0  # when it may no longer start (Triton's queue timeout); 0: never

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
        workers: Worker processes of the server; each runs its share of the config's
            instances (rounded up: at least one).
    """

    def __init__(
        self,
        run: Runner,
        config: cfg.ModelConfig,
        stats: VersionStats,
        executor: Executor,
        *,
        workers: int = 1,
    ) -> None:
        self._run = run
        self._stats = stats
        self._executor = executor
        self._max_batch = config.max_batch_size
        self._batching = config.HasField("dynamic_batching") and self._max_batch > 0
        batching = config.dynamic_batching
        self._delay_s = batching.max_queue_delay_microseconds / 1e6
        self._preferred = sorted(batching.preferred_batch_size) or [self._max_batch]
        self._queue = QueuePolicy.of(config)
        self._waiting: deque[_Pending] = deque()
        self._busy = 0  # workers running a batch
        self._typical_ns = INLINE_BELOW_NS * 10  # moving average of a run; starts "slow"
        self._wakeup = asyncio.Event()
        # Triton's instance count is for the whole server: each worker process runs its share.
        count = -(-(sum(group.count for group in config.instance_group) or 1) // workers)
        self._workers = [asyncio.create_task(self._work()) for _ in range(count)]
        self._inline = count == 1

    async def infer(
        self, feed: Mapping[str, np.ndarray], batch: int, timeout_us: int | None = None
    ) -> dict[str, np.ndarray]:
        """Outputs for one checked feed of ``batch`` items (0 for unbatched models).

        Raises:
            ProtocolError: 503 when the queue is full or the request waited past its
                timeout (the config's queue policy, as Triton enforces it).
        """
        if self._queue.max_size and len(self._waiting) >= self._queue.max_size:
            raise ProtocolError(
                f"Exceeds maximum queue size ({self._queue.max_size} requests wait already); "
                "retry later, or raise dynamic_batching.default_queue_policy.max_queue_size",
                status=503,
            )
        pending = _Pending(feed, batch, asyncio.get_running_loop().create_future())
        pending.deadline_ns = self._queue.deadline_ns(pending.arrived_ns, timeout_us)
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
                group = await self._gather()
                if group:
                    await self._run_one(loop, group)
            finally:
                self._busy -= 1

    async def _run_one(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        started = time.perf_counter_ns()
        for pending in group:
            self._stats.record_queue(started - pending.arrived_ns)
        feed = _merge(group) if len(group) > 1 else group[0].feed
        try:
            if self._inline and self._typical_ns < INLINE_BELOW_NS:
                outputs, ns = _timed(self._run, feed)  # cheaper than a hop to a thread
            else:
                outputs, ns = await loop.run_in_executor(self._executor, _timed, self._run, feed)
        except Exception as err:
            self._record(group, time.perf_counter_ns() - started)
            _fail(group, err)
            return
        self._record(group, ns)
        _answer(group, outputs)

    def _record(self, group: list[_Pending], ns: int) -> None:
        """Count one run of ``ns`` (the run alone: a hop to a thread and back is not the
        model's time, and counting it would keep a fast model off the inline path)."""
        self._typical_ns = (7 * self._typical_ns + ns) // 8
        self._stats.record_execution(sum(p.batch for p in group) or 1, ns)
        self._stats.record_compute(ns, len(group))

    async def _gather(self) -> list[_Pending]:
        self._drop_expired()
        if not self._waiting:
            return []
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

    def _drop_expired(self) -> None:
        """Answer the requests that waited past their timeout, as Triton rejects them."""
        if not self._queue.timeout_us and not self._queue.allow_override:
            return  # nothing can expire: skip the scan on the hot path
        now = time.perf_counter_ns()
        expired = [p for p in self._waiting if p.deadline_ns and p.deadline_ns < now]
        if not expired:
            return
        self._waiting = deque(p for p in self._waiting if not (p.deadline_ns and
                                                               p.deadline_ns < now))  # fmt: skip
        _fail(expired, ProtocolError("Request timeout expired while the request waited in "
                                     "the queue; retry, or allow a longer timeout",
                                     status=503))  # fmt: skip

    def _take_matching(self, group: list[_Pending], key: object, size: int) -> int:
        """Move waiting requests that fit into ``group``; return the new batch size."""
        self._drop_expired()
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


@dataclass(frozen=True)
class QueuePolicy:
    """Triton's ``dynamic_batching.default_queue_policy``: how many requests may wait,
    and for how long (``REJECT`` only; ``DELAY`` lets them wait)."""

    max_size: int = 0  # 0: no limit
    timeout_us: int = 0  # 0: none
    allow_override: bool = False

    @classmethod
    def of(cls, config: cfg.ModelConfig) -> QueuePolicy:
        if not config.HasField("dynamic_batching"):
            return cls()
        policy = config.dynamic_batching.default_queue_policy
        rejects = policy.timeout_action == policy.REJECT
        return cls(policy.max_queue_size, policy.default_timeout_microseconds if rejects else 0,
                   policy.allow_timeout_override and rejects)  # fmt: skip

    def deadline_ns(self, arrived_ns: int, requested_us: int | None) -> int:
        timeout_us = requested_us if self.allow_override and requested_us else self.timeout_us
        return arrived_ns + timeout_us * 1000 if timeout_us else 0


def _timed(run: Runner, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    started = time.perf_counter_ns()
    outputs = run(feed)
    return outputs, time.perf_counter_ns() - started


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
