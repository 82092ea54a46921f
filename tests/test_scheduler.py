"""Scheduler behaviour with injected fake collectors: isolation, timeouts, skips, no pile-up."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.exposition.formats import TEXT, encode
from agent.exposition.registry import Registry
from agent.pool import DaemonThreadPool
from agent.scheduler import Job, Scheduler


class Fake:
    """A collector whose behaviour is a function; counts how often it was started."""

    def __init__(self, behaviour: Callable[[], None] = lambda: None, metric: str = "fake") -> None:
        self.behaviour = behaviour
        self.metric = metric
        self.calls = 0

    def collect(self) -> list[Metric]:
        self.calls += 1
        self.behaviour()
        return [GaugeMetricFamily(self.metric, "A fake value.", value=float(self.calls))]



def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def runs_until(scheduler: Scheduler, condition: Callable[[], bool],
                     timeout: float = 10.0) -> None:
    """Runs every collector again until the condition holds (a stuck call's collector is
    skipped until its call returns)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await scheduler.run_all_once()
        await asyncio.sleep(0.005)

def fail() -> None:
    raise OSError("disk on fire")


@pytest.fixture
def pool():
    executor = DaemonThreadPool(4, "test")
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


def make(pool: DaemonThreadPool, *jobs: Job) -> tuple[Scheduler, Registry]:
    registry = Registry()
    return Scheduler(jobs, registry, pool, jitter=0), registry


def status(scheduler: Scheduler, name: str):
    return next(s for s in scheduler.statuses() if s.name == name)


async def test_success_publishes_snapshot(pool: DaemonThreadPool) -> None:
    scheduler, registry = make(pool, Job("ok", Fake(), 1, 1))
    assert not scheduler.all_completed_once()
    await scheduler.run_all_once()
    assert scheduler.all_completed_once()
    assert b"fake 1\n" in encode(registry.snapshots["ok"].families, TEXT)
    st = status(scheduler, "ok")
    assert st.success and st.last_error is None and st.last_success_time is not None


async def test_raising_collector_is_isolated_and_logged_once_per_change(
    pool: DaemonThreadPool, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Fake(fail, "flaky")
    scheduler, registry = make(pool, Job("bad", flaky, 1, 1), Job("ok", Fake(), 1, 1))
    caplog.set_level(logging.INFO, "hostagent.scheduler")
    for _ in range(3):
        await scheduler.run_all_once()
    bad = status(scheduler, "bad")
    assert bad.success is False and bad.last_error == "OSError: disk on fire"
    assert "bad" not in registry.snapshots and "ok" in registry.snapshots
    assert status(scheduler, "ok").success
    failures = [r for r in caplog.records if r.getMessage() == "collector failed"]
    assert len(failures) == 1
    flaky.behaviour = lambda: None
    await scheduler.run_all_once()
    await scheduler.run_all_once()
    assert "bad" in registry.snapshots
    recovered = [r for r in caplog.records if r.getMessage() == "collector recovered"]
    assert len(recovered) == 1


async def test_hanging_collector_times_out_and_is_not_restarted(pool: DaemonThreadPool) -> None:
    release = threading.Event()
    hung = Fake(lambda: release.wait(30), "hung")
    healthy = Fake()
    scheduler, registry = make(pool, Job("hung", hung, 1, 0.1), Job("ok", healthy, 1, 1))
    threads_before = threading.active_count()
    for _ in range(20):
        await scheduler.run_all_once()
    st = status(scheduler, "hung")
    assert hung.calls == 1, "a stuck collector must not be started again"
    assert st.timeouts == 1 and st.skipped == 19 and st.success is False
    assert "timed out after 0.1s" in (st.last_error or "")
    assert healthy.calls == 20 and status(scheduler, "ok").success
    assert threading.active_count() - threads_before <= pool.max_workers
    assert pool.pending == 0, "nothing queued behind the stuck call"
    assert "hung" not in registry.snapshots
    release.set()
    await runs_until(scheduler, lambda: hung.calls == 2)  # once the stuck call returned
    assert hung.calls == 2 and status(scheduler, "hung").success


async def test_overrunning_collector_skips_ticks_under_the_real_loop(
    pool: DaemonThreadPool,
) -> None:
    running, most = [0], [0]

    def overrun() -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.25)
        running[0] -= 1

    slow = Fake(overrun, "slow")
    fast = Fake()
    scheduler, _ = make(pool, Job("slow", slow, 0.05, 0.05), Job("fast", fast, 0.05, 0.05))
    scheduler.start()
    await until(lambda: fast.calls >= 8 and status(scheduler, "slow").skipped >= 1)
    await scheduler.stop()
    st = status(scheduler, "slow")
    assert st.timeouts >= 1 and st.skipped >= 1
    assert most[0] == 1, "never more than one call in flight"
    assert fast.calls >= 8 and status(scheduler, "fast").success


async def test_failure_of_one_does_not_delay_another(pool: DaemonThreadPool) -> None:
    release = threading.Event()
    scheduler, registry = make(
        pool,
        Job("hung", Fake(lambda: release.wait(30), "hung"), 0.05, 0.05),
        Job("bad", Fake(fail, "bad"), 0.05, 0.05),
        Job("ok", Fake(), 0.05, 0.05),
    )
    scheduler.start()
    await until(lambda: status(scheduler, "ok").runs >= 8)
    await scheduler.stop()
    release.set()
    ok = status(scheduler, "ok")
    assert ok.runs >= 8 and ok.success and ok.timeouts == 0 and ok.skipped == 0
    assert set(registry.snapshots) == {"ok"}


async def test_stop_cancels_promptly_even_with_a_hung_call(pool: DaemonThreadPool) -> None:
    release = threading.Event()
    hung = Fake(lambda: release.wait(30))
    scheduler, _ = make(pool, Job("hung", hung, 5, 4))
    scheduler.start()
    await until(lambda: hung.calls == 1)
    # The call still blocks for 30 s: stop must not wait for it.
    await asyncio.wait_for(scheduler.stop(), 10)
    assert not release.is_set()
    release.set()


def test_pool_never_exceeds_its_bound() -> None:
    executor = DaemonThreadPool(3, "bound")
    release = threading.Event()
    futures = [executor.submit(release.wait, 10) for _ in range(10)]
    wait_until(lambda: executor.pending == 7)
    assert executor.threads == 3 and executor.pending == 7
    release.set()
    assert all(f.result(timeout=5) for f in futures)
    executor.shutdown()


async def test_collectors_sharing_an_interval_tick_together_with_jitter(
    pool: DaemonThreadPool,
) -> None:
    stamps: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    jobs = [Job(name, Fake(lambda n=name: stamps[n].append(time.monotonic())), 0.2, 0.1)
            for name in stamps]
    scheduler = Scheduler(jobs, Registry(), pool, jitter=0.5)
    scheduler.start()
    await asyncio.sleep(1.1)
    await scheduler.stop()
    rounds = min(len(s) for s in stamps.values())
    assert rounds >= 4
    for index in range(rounds - 1):  # every run of a tick comes before any of the next one
        this_tick = [stamps[name][index] for name in stamps]
        next_tick = [stamps[name][index + 1] for name in stamps]
        assert max(this_tick) < min(next_tick), "same interval, same tick"
    gaps = [b - a for a, b in zip(stamps["a"][1:], stamps["a"][2:], strict=False)]
    assert max(gaps) - min(gaps) > 0.005, "jitter varies from tick to tick"


def test_work_behind_a_stuck_call_is_always_picked_up() -> None:
    """A submit racing with a worker that just took a blocking call must not be stranded."""
    release = threading.Event()
    pools = []
    for _ in range(200):
        executor = DaemonThreadPool(2, "race")
        pools.append(executor)
        executor.submit(release.wait, 10)
        assert executor.submit(lambda: True).result(timeout=2)
    release.set()
    for executor in pools:
        executor.shutdown(wait=False)


async def test_a_run_still_queued_at_its_timeout_is_skipped_not_stuck() -> None:
    one = DaemonThreadPool(1, "one")
    release = threading.Event()
    blocker = Fake(lambda: release.wait(30), "blocker")
    queued = Fake()
    scheduler, _ = make(one, Job("blocker", blocker, 1, 0.05), Job("queued", queued, 1, 0.05))
    await scheduler.run_all_once()
    st = status(scheduler, "queued")
    assert queued.calls == 0 and st.timeouts == 0 and st.skipped == 1
    assert "workers busy" in (st.last_error or "")
    assert one.pending == 0, "the never-started call was withdrawn"
    release.set()
    await runs_until(scheduler, lambda: queued.calls == 1)
    assert queued.calls == 1 and status(scheduler, "queued").success
    one.shutdown(wait=False)


class Closable(Fake):
    def __init__(self, behaviour: Callable[[], None] = lambda: None) -> None:
        super().__init__(behaviour)
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_apply_keeps_a_stuck_call_and_closes_replaced_collectors(
    pool: DaemonThreadPool,
) -> None:
    release = threading.Event()
    hung = Closable(lambda: release.wait(30))
    scheduler, registry = make(pool, Job("fs", hung, 1, 0.05))
    await scheduler.run_all_once()
    assert hung.calls == 1 and status(scheduler, "fs").timeouts == 1
    scheduler.apply([])  # disabled by a reload
    assert "fs" not in registry.snapshots and not hung.closed, "closed once its call returns"
    again = Closable()
    scheduler.apply([Job("fs", again, 1, 0.05)])  # and enabled again
    await scheduler.run_all_once()
    assert again.calls == 0, "no second call next to the stuck one"
    release.set()
    await until(lambda: hung.closed)
    await scheduler.run_all_once()
    assert again.calls == 1
    replacement = Closable()
    scheduler.apply([Job("fs", replacement, 1, 0.05)])
    assert again.closed and not replacement.closed


class CountingPool(DaemonThreadPool):
    """Counts hand-offs to worker threads."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers, "counting")
        self.submits = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        self.submits += 1
        return super().submit(fn, *args, **kwargs)


async def test_collectors_due_on_one_tick_are_one_hand_off_and_one_wake_up() -> None:
    counting = CountingPool(4)
    threads: dict[str, str] = {}
    fakes = {name: Fake(lambda n=name: threads.__setitem__(n, threading.current_thread().name),
                        name) for name in ("a", "b", "c", "d", "e")}
    scheduler, registry = make(counting, *(Job(n, f, 1, 1) for n, f in fakes.items()))
    loop = asyncio.get_running_loop()
    wake_ups = []
    original = loop.call_soon_threadsafe

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        wake_ups.append(args)
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        await scheduler.run_all_once()
    finally:
        del loop.call_soon_threadsafe
    assert set(registry.snapshots) == set(fakes)
    assert counting.submits == 1, "one hand-off for the whole tick"
    assert len(set(threads.values())) == 1
    assert len(wake_ups) == 1, "one loop wake-up when the batch is done"
    counting.shutdown(wait=False)


async def test_a_slow_collector_does_not_hold_back_its_batch(pool: DaemonThreadPool) -> None:
    """Its batch-mates move to another worker and finish while it still runs."""
    release = threading.Event()
    slow, others = Fake(lambda: release.wait(30), "slow"), [Fake(metric=f"m{i}") for i in range(3)]
    scheduler, registry = make(pool, Job("slow", slow, 1, 0.4),
                               *(Job(f"o{i}", f, 1, 1) for i, f in enumerate(others)))
    await scheduler.run_all_once()
    assert all(f.calls == 1 for f in others) and {"o0", "o1", "o2"} <= set(registry.snapshots)
    assert status(scheduler, "slow").timeouts == 1
    assert all(status(scheduler, f"o{i}").timeouts == 0 for i in range(3))
    release.set()


async def test_each_tick_reports_how_late_its_timer_fired(pool: DaemonThreadPool) -> None:
    """The loop-lag histogram is fed by the ticks the agent makes anyway."""
    late: list[float] = []
    scheduler = Scheduler([Job("ok", Fake(), 0.05, 0.05)], Registry(), pool, jitter=0,
                          on_late=late.append)
    scheduler.start()
    await asyncio.sleep(0.12)
    time.sleep(0.2)  # blocks the loop across at least one due tick
    await asyncio.sleep(0.12)
    await scheduler.stop()
    assert late and max(late) >= 0.1, late


async def test_a_batch_ending_together_is_one_registry_change(pool) -> None:
    """Collectors of one batch that are done by the time the loop looks are published as one
    change (one copy of the registry's mapping, one wake of the renderer), not one each."""
    jobs = [Job(f"c{i}", Fake(metric=f"m{i}"), 15, 5) for i in range(6)]
    scheduler, registry = make(pool, *jobs)
    before = registry.generation
    await scheduler.run_all_once()
    assert sorted(registry.snapshots) == [f"c{i}" for i in range(6)]
    assert registry.generation - before <= 2, registry.generation - before
