"""Runs collectors on their intervals, in a bounded thread pool, each with its own timeout.

Collectors sharing an interval tick together and run as one batch: one hand-off to a worker
thread, one after another there, and one wake-up of the event loop when the batch is done (on
a mostly idle host a thread or loop wake-up costs more than most collectors). A collector
still running after a short grace while others wait behind it has the rest of its batch moved
to another worker, so a slow or hung source never delays the others past that grace.

Rules: at most one call in flight per collector. A call that outlives its timeout is
abandoned (counted in timeouts) and the collector is not started again until that call
returns (each tick meanwhile is counted in skipped), so a hung source costs one thread,
never a pile of them. A collector not started within its timeout (every worker busy) is
withdrawn and counted in skipped. Failures are logged once per change of state.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from agent.collectors.base import Collector
from agent.exposition.registry import Registry, Snapshot
from agent.exposition.status import CollectorStatus
from agent.logs import kv

log = logging.getLogger("hostagent.scheduler")

# How long a batch may wait behind one of its collectors before the rest move to another
# worker: at most this, and at most a quarter of the shortest timeout in the batch.
GRACE = 0.25


@dataclass(frozen=True)
class Job:
    name: str
    collector: Collector
    interval: float
    timeout: float


@dataclass(eq=False)  # identity: kept in sets
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
    # The batch call that holds this collector's run, until it ends (or, stuck, returns).
    in_flight: Future[None] | None = field(default=None, repr=False)

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


def _close(collector: Collector, in_flight: Future[None] | None) -> None:
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


class _Batch:
    """Collectors run one after another in one worker call. The loop reads its progress
    under the lock, takes finished outcomes, and may take back collectors not yet started."""

    def __init__(self, items: list[tuple[_State, Job]]) -> None:
        self._lock = threading.Lock()
        self._pending: deque[tuple[_State, Job]] = deque(items)
        self._current: _State | None = None
        self._started = 0.0  # time.monotonic() the current collector started
        self._outcomes: list[tuple[_State, Job, _Outcome]] = []
        self.future: Future[None]  # set by the scheduler as it submits run
        self.waiter: asyncio.Future[None]  # the same, awaitable on the loop

    def run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._current = None
                    return
                state, job = self._pending.popleft()
                self._current, self._started = state, time.monotonic()
            outcome = _run(job.name, job.collector.collect)
            with self._lock:
                self._outcomes.append((state, job, outcome))
                self._current = None

    def progress(self) -> tuple[list[tuple[_State, Job, _Outcome]], _State | None, float,
                                list[_State]]:
        """Outcomes not taken yet, the collector running and since when, those waiting."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
            waiting = [state for state, _ in self._pending]
            return outcomes, self._current, self._started, waiting

    def take(self, states: Iterable[_State] | None = None) -> list[tuple[_State, Job]]:
        """Withdraw collectors not started yet (all when states is None)."""
        with self._lock:
            wanted = None if states is None else set(states)
            taken = [item for item in self._pending if wanted is None or item[0] in wanted]
            self._pending = deque(item for item in self._pending
                                  if wanted is not None and item[0] not in wanted)
            return taken


class Scheduler:
    def __init__(
        self, jobs: Iterable[Job], registry: Registry, executor: Executor, jitter: float = 0.1,
        on_late: Callable[[float], None] | None = None,
    ) -> None:
        self._registry = registry
        self._on_late = on_late  # how late each tick's timer fired: loop responsiveness
        self._executor = executor
        self.jitter = jitter
        self._states = {job.name: _State(job) for job in jobs}
        self._tasks: dict[float, asyncio.Task[None]] = {}  # one per interval
        self._kicks: set[asyncio.Task[None]] = set()  # first runs of collectors added live
        self._abandoned: dict[str, Future[None]] = {}  # stuck calls of removed collectors
        # Snapshots of outcomes taken in one turn of run_batch, published together.
        self._published: list[Snapshot] | None = None
        self._running = False
        self._origin: float | None = None
        self._seed = random.random()
        # Sees each interval's loop: an end other than by cancellation is a bug to report.
        self.watch: Callable[[asyncio.Task[None]], None] = lambda task: None

    def start(self) -> None:
        self._running = True
        for interval in {state.job.interval for state in self._states.values()}:
            self._spawn(interval)

    def _spawn(self, interval: float) -> None:
        self._tasks[interval] = asyncio.create_task(
            self._loop(interval), name=f"collectors:every {interval:g}s")
        self.watch(self._tasks[interval])

    def apply(self, jobs: Iterable[Job]) -> None:
        """Switch to a new job set without a gap: a job passed again unchanged (the same
        object) keeps running; a changed one runs at once and then on its interval's
        schedule, keeping its counters, its last snapshot (until the next run replaces it)
        and any stuck call; a removed one stops and its series go."""
        new = {job.name: job for job in jobs}
        for name in [n for n in self._states if n not in new]:
            removed = self._states.pop(name)
            _close(removed.job.collector, removed.in_flight)
            if removed.in_flight is not None and not removed.in_flight.done():
                # Re-enabling it must not start a second call next to the stuck one.
                self._abandoned[name] = removed.in_flight
            self._registry.remove(name)
        started: list[_State] = []
        for name, job in new.items():
            state = self._states.get(name)
            if state is not None and state.job is job:
                continue
            if state is None:
                state = self._states[name] = _State(job, in_flight=self._abandoned.pop(name, None))
            else:
                _close(state.job.collector, state.in_flight)
                state.job = job
            started.append(state)
        if self._running:
            intervals = {state.job.interval for state in self._states.values()}
            for interval in [i for i in self._tasks if i not in intervals]:
                self._tasks.pop(interval).cancel()
            fresh = intervals - set(self._tasks)
            for interval in fresh:
                self._spawn(interval)  # runs its collectors at once
            early = [s for s in started if s.job.interval not in fresh]
            if early:
                kick = asyncio.create_task(self.run_batch(early), name="collectors:added")
                self._kicks.add(kick)
                kick.add_done_callback(self._kicks.discard)
        self._registry.touch()

    def alive(self) -> bool:
        """Every interval's loop is running and ticked recently: proof for a watchdog."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for state in self._states.values():
            task = self._tasks.get(state.job.interval)
            if task is None or task.done():
                return False
            late = state.job.interval * (1 + self.jitter) + state.job.timeout + 1.0
            if state.last_tick is not None and now - state.last_tick > late:
                return False
        return True

    async def stop(self) -> None:
        self._running = False
        tasks = [*self._tasks.values(), *self._kicks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def settled(self) -> bool:
        """No collector is running: no snapshot is about to follow the last one."""
        return all(s.in_flight is None or s.in_flight.done() for s in self._states.values())

    def statuses(self) -> list[CollectorStatus]:
        return [state.status() for state in self._states.values()]

    def all_completed_once(self) -> bool:
        return all(state.success is not None for state in self._states.values())

    async def run_all_once(self) -> None:
        await self.run_batch(list(self._states.values()))

    def _jitter_for(self, interval: float, tick: int) -> float:
        """The same delay for every collector sharing an interval and tick, random per agent:
        spreads load across a fleet, while one host's collectors finish together and their
        snapshots coalesce into one render."""
        fraction = random.Random(f"{self._seed}:{interval}:{tick}").random()
        return fraction * self.jitter * interval

    async def _loop(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        if self._origin is None:
            self._origin = loop.time()
        origin = self._origin
        tick = int((loop.time() - origin) / interval)
        while True:
            await self.run_batch([s for s in self._states.values() if s.job.interval == interval])
            # Fixed-rate schedule; after a stall, skip the missed ticks instead of bursting.
            tick = max(tick + 1, int((loop.time() - origin) / interval) + 1)
            due = origin + tick * interval + self._jitter_for(interval, tick)
            delay = max(0.0, due - loop.time())
            fire_at = time.monotonic() + delay
            await asyncio.sleep(delay)
            if self._on_late is not None:
                self._on_late(time.monotonic() - fire_at)

    async def run_batch(self, states: list[_State]) -> None:
        """One tick of these collectors: those not in flight run as one batch; returns when
        each has finished, timed out or was not started within its timeout."""
        loop_now = asyncio.get_running_loop().time()
        due: list[_State] = []
        for state in states:
            state.last_tick = loop_now
            if state.in_flight is not None and not state.in_flight.done():
                state.skipped += 1
            else:
                due.append(state)
        if len(due) < len(states):
            self._registry.touch()
        if not due:
            return
        tick = time.monotonic()
        grace = min([GRACE, *(state.job.timeout / 4 for state in due)])
        unresolved = set(due)
        batches = [self._submit([(state, state.job) for state in due])]
        while True:
            now = time.monotonic()
            wake = now + grace
            self._published = []  # what this turn's outcomes publish, as one change
            try:
                for batch in list(batches):
                    finished = batch.future.done()  # before progress(): no outcome is missed
                    outcomes, current, started, waiting = batch.progress()
                    for state, job, outcome in outcomes:
                        if state in unresolved:
                            unresolved.discard(state)
                            self._finish(state, job, outcome, batch.future)
                    late = [s for s in waiting if tick + s.job.timeout <= now]
                    for state, _ in batch.take(late):
                        unresolved.discard(state)
                        self._not_started(state, batch.future)
                    waiting = [s for s in waiting if s not in late]
                    if current is not None and current in unresolved:
                        if now - started >= current.job.timeout:
                            unresolved.discard(current)
                            self._timed_out(current)
                        else:
                            wake = min(wake, started + current.job.timeout)
                        if waiting and now - started >= grace:
                            # Waiting behind a slow one: the rest go on in another worker.
                            batches.append(self._submit(batch.take()))
                            waiting = []
                        elif waiting:
                            wake = min(wake, started + grace)
                    elif current is None and not waiting and not finished:
                        batch.future.cancel()  # all withdrawn before it started: drop it
                    wake = min([wake, *(tick + s.job.timeout for s in waiting)])
                    if finished or not (waiting or (current is not None and current in unresolved)):
                        batches.remove(batch)
            finally:
                published, self._published = self._published, None
                if published:
                    self._registry.publish_all(published)
            if not unresolved:
                return
            await asyncio.wait([batch.waiter for batch in batches],
                               timeout=max(0.0, wake - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)

    def _submit(self, items: list[tuple[_State, Job]]) -> _Batch:
        batch = _Batch(items)
        batch.future = self._executor.submit(batch.run)
        batch.waiter = asyncio.wrap_future(batch.future)
        for state, _ in items:
            state.in_flight = batch.future
        return batch

    def _finish(self, state: _State, job: Job, outcome: _Outcome, call: Future[None]) -> None:
        if state.in_flight is call:
            state.in_flight = None
        if state.job is not job or self._states.get(job.name) is not state:
            return  # replaced or removed while it ran: its result is not wanted
        state.runs += 1
        state.last_duration = outcome.duration
        self._record(state, outcome.snapshot, outcome.error)

    def _not_started(self, state: _State, call: Future[None]) -> None:
        # Still queued behind other work: it never started, so it is not stuck; the next
        # tick runs it again.
        if state.in_flight is call:
            state.in_flight = None
        state.runs += 1
        state.skipped += 1
        self._record(state, None, "not started within the timeout: all workers busy")

    def _timed_out(self, state: _State) -> None:
        state.runs += 1
        state.timeouts += 1
        state.last_duration = state.job.timeout
        self._record(state, None, f"timed out after {state.job.timeout:g}s")

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
            if self._published is not None:
                self._published.append(snapshot)
            else:
                self._registry.publish(snapshot)
        else:
            # Like node_exporter: a failed collector's series are absent, not stale copies.
            self._registry.remove(name)
