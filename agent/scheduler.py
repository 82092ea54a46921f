"""Runs each collector on its own interval, in a bounded thread pool, with a timeout.

Rules: at most one call in flight per collector. A call that outlives its timeout is
abandoned (counted in timeouts) and the collector is not started again until that call
returns (each tick meanwhile is counted in skipped), so a hung source costs one thread,
never a pile of them. Failures are logged once per change of state, not every tick.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from agent.collectors.base import Collector
from agent.exposition.registry import Registry, Snapshot
from agent.exposition.status import CollectorStatus
from agent.logs import kv

log = logging.getLogger("hostagent.scheduler")


@dataclass(frozen=True)
class Job:
    name: str
    collector: Collector
    interval: float
    timeout: float


@dataclass
class _State:
    job: Job
    runs: int = 0
    success: bool | None = None
    last_duration: float | None = None
    last_success_time: float | None = None
    last_error: str | None = None
    timeouts: int = 0
    skipped: int = 0
    last_tick: float | None = None  # loop time the latest tick started
    in_flight: Future[_Outcome] | None = field(default=None, repr=False)

    def status(self) -> CollectorStatus:
        return CollectorStatus(
            self.job.name, self.job.interval, self.job.timeout, self.runs, self.success,
            self.last_duration, self.last_success_time, self.last_error, self.timeouts,
            self.skipped,
        )


@dataclass(frozen=True)
class _Outcome:
    snapshot: Snapshot | None
    error: str | None
    duration: float


def _close(collector: Collector, in_flight: Future[_Outcome] | None) -> None:
    """Collectors that hold resources (the filesystem collector's threads) release them, once
    their last call has returned."""
    close = getattr(collector, "close", None)
    if close is None:
        return
    if in_flight is None or in_flight.done():
        close()
    else:
        in_flight.add_done_callback(lambda _: close())


def _run(name: str, collect: Callable[[], Iterable[Metric]]) -> _Outcome:
    """Runs in a worker thread: collect, never raise."""
    start = time.perf_counter()
    try:
        snapshot = Snapshot.of(name, collect())
    except Exception as exc:
        return _Outcome(None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
    return _Outcome(snapshot, None, time.perf_counter() - start)


class Scheduler:
    def __init__(
        self, jobs: Iterable[Job], registry: Registry, executor: Executor, jitter: float = 0.1,
    ) -> None:
        self._registry = registry
        self._executor = executor
        self.jitter = jitter
        self._states = {job.name: _State(job) for job in jobs}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._abandoned: dict[str, Future[_Outcome]] = {}  # stuck calls of removed collectors
        self._running = False
        self._origin: float | None = None
        self._seed = random.random()

    def start(self) -> None:
        self._running = True
        for state in self._states.values():
            self._spawn(state)

    def _spawn(self, state: _State) -> None:
        name = state.job.name
        self._tasks[name] = asyncio.create_task(self._loop(state), name=f"collector:{name}")

    def apply(self, jobs: Iterable[Job]) -> None:
        """Switch to a new job set without a gap: a job passed again unchanged (the same
        object) keeps running; a changed one restarts on its new schedule keeping its
        counters, its last snapshot (until the next run replaces it) and any stuck call;
        a removed one stops and its series go."""
        new = {job.name: job for job in jobs}
        for name in [n for n in self._states if n not in new]:
            self._cancel(name)
            removed = self._states.pop(name)
            _close(removed.job.collector, removed.in_flight)
            if removed.in_flight is not None and not removed.in_flight.done():
                # Re-enabling it must not start a second call next to the stuck one.
                self._abandoned[name] = removed.in_flight
            self._registry.remove(name)
        for name, job in new.items():
            state = self._states.get(name)
            if state is not None and state.job is job:
                continue
            if state is None:
                state = self._states[name] = _State(job, in_flight=self._abandoned.pop(name, None))
            else:
                self._cancel(name)
                _close(state.job.collector, state.in_flight)
                state.job = job
            if self._running:
                self._spawn(state)
        self._registry.touch()

    def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def alive(self) -> bool:
        """Every collector loop is running and ticked recently: proof for a watchdog."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for name, state in self._states.items():
            task = self._tasks.get(name)
            if task is None or task.done():
                return False
            late = state.job.interval * (1 + self.jitter) + state.job.timeout + 1.0
            if state.last_tick is not None and now - state.last_tick > late:
                return False
        return True

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    def statuses(self) -> list[CollectorStatus]:
        return [state.status() for state in self._states.values()]

    def all_completed_once(self) -> bool:
        return all(state.success is not None for state in self._states.values())

    async def run_all_once(self) -> None:
        await asyncio.gather(*(self.run_once(state) for state in self._states.values()))

    def _jitter_for(self, interval: float, tick: int) -> float:
        """The same delay for every collector sharing an interval and tick, random per agent:
        spreads load across a fleet, while one host's collectors finish together and their
        snapshots coalesce into one render."""
        fraction = random.Random(f"{self._seed}:{interval}:{tick}").random()
        return fraction * self.jitter * interval

    async def _loop(self, state: _State) -> None:
        loop = asyncio.get_running_loop()
        interval = state.job.interval
        if self._origin is None:
            self._origin = loop.time()
        origin = self._origin
        tick = int((loop.time() - origin) / interval)
        while True:
            await self.run_once(state)
            # Fixed-rate schedule; after a stall, skip the missed ticks instead of bursting.
            tick = max(tick + 1, int((loop.time() - origin) / interval) + 1)
            due = origin + tick * interval + self._jitter_for(interval, tick)
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def run_once(self, state: _State) -> None:
        name = state.job.name
        state.last_tick = asyncio.get_running_loop().time()
        if state.in_flight is not None and not state.in_flight.done():
            state.skipped += 1
            self._registry.touch()
            return
        call = self._executor.submit(_run, name, state.job.collector.collect)
        state.in_flight = call
        waiter = asyncio.wrap_future(call)
        done, _ = await asyncio.wait({waiter}, timeout=state.job.timeout)
        state.runs += 1
        if not done and call.cancel():
            # Still queued behind other collectors' work: it never started, so it is not
            # stuck; the next tick submits it again.
            state.in_flight = None
            state.skipped += 1
            self._record(state, None, "not started within the timeout: all workers busy")
            return
        if not done:
            state.timeouts += 1
            state.last_duration = state.job.timeout
            self._record(state, None, f"timed out after {state.job.timeout:g}s")
            return
        outcome = waiter.result()
        state.in_flight = None
        state.last_duration = outcome.duration
        self._record(state, outcome.snapshot, outcome.error)

    def _record(self, state: _State, snapshot: Snapshot | None, error: str | None) -> None:
        name = state.job.name
        ok = snapshot is not None
        if ok and state.success is False:
            log.info("collector recovered", extra=kv(collector=name))
        elif not ok and state.success is not False:
            log.warning("collector failed", extra=kv(collector=name, err=error))
        state.success = ok
        state.last_error = error
        if snapshot is not None:
            state.last_success_time = time.time()
            self._registry.publish(snapshot)
        else:
            # Like node_exporter: a failed collector's series are absent, not stale copies.
            self._registry.remove(name)
