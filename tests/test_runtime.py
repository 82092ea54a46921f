"""The runtime collector: loop lag, GC pauses, tasks, threads, queued work; and its wiring."""

from __future__ import annotations

import asyncio
import gc
import selectors
import threading
import time
from typing import Any

import aiohttp
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from agent.agent import Agent, build_jobs
from agent.collectors.catalog import BY_NAME
from agent.collectors.runtime import (
    GcPauses,
    Histogram,
    LoopLagProbe,
    RuntimeCollector,
    RuntimeProbes,
    grid_delay,
)
from agent.config import Config
from agent.pool import DaemonThreadPool
from tests.test_render import promtool_problems
from tests.test_web import running, wait_ready

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: list[Metric]) -> bytes:
    return bytes(generate_latest(Families(families)))


def samples(families: list[Metric]) -> Samples:
    text = exposition(families).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def bucket_counts(histogram: Histogram) -> dict[str, float]:
    """Observations per bucket (not cumulative), keyed by upper bound."""
    cumulative, _ = histogram.buckets()
    previous = 0.0
    out = {}
    for bound, count in cumulative:
        out[bound] = count - previous
        previous = count
    return out


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.buckets() == ([("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)], 3.65)


async def test_loop_lag_records_a_200ms_block_in_its_bucket() -> None:
    probe = LoopLagProbe(period=0.01)
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0.1)
    before = bucket_counts(probe.lag)
    time.sleep(0.2)  # blocks the event loop
    deadline = time.monotonic() + 10
    while bucket_counts(probe.lag)["0.25"] == before["0.25"]:  # the late timer, recorded
        assert time.monotonic() < deadline, "the block was never recorded"
        await asyncio.sleep(0.01)
    task.cancel()
    after = bucket_counts(probe.lag)
    grown = {bound for bound in after if after[bound] > before[bound]}
    assert after["0.25"] >= before["0.25"] + 1, (before, after)
    assert not grown & {"0.5", "1.0", "+Inf"}, "a 0.2 s block is not recorded as longer"
    assert probe.tasks is not None and probe.tasks >= 1

    found = samples(RuntimeCollector(RuntimeProbes(loop_lag=probe)).collect())
    le_01 = found[("hostagent_event_loop_lag_seconds_bucket", (("le", "0.1"),))]
    le_025 = found[("hostagent_event_loop_lag_seconds_bucket", (("le", "0.25"),))]
    assert le_025 - le_01 == 1
    assert found[("hostagent_event_loop_lag_seconds_sum", ())] >= 0.19


def test_gc_histogram_counts_a_forced_collection() -> None:
    pauses = GcPauses()
    pauses.start()
    try:
        gc.collect()
    finally:
        pauses.stop()
    collector = RuntimeCollector(RuntimeProbes(gc_pauses=pauses))
    count = ("hostagent_gc_pause_seconds_count", (("generation", "2"),))
    found = samples(collector.collect())
    assert found[count] >= 1
    assert found[("hostagent_gc_pause_seconds_sum", (("generation", "2"),))] > 0
    gc.collect()  # stopped: no longer counted
    assert samples(collector.collect())[count] == found[count]


def test_gc_pauses_family_is_handed_out_again_until_a_collection() -> None:
    """Collections are rare: while none ran, the same family object (skipped at once by the
    renderer); after one, a new family counting it."""
    pauses = GcPauses()
    collector = RuntimeCollector(RuntimeProbes(gc_pauses=pauses))

    def family() -> Metric:
        return next(f for f in collector.collect() if f.name == "hostagent_gc_pause_seconds")

    first = family()
    assert family() is first
    pauses.start()
    try:
        gc.collect()
    finally:
        pauses.stop()
    second = family()
    assert second is not first and second != first
    assert family() is second


def test_threads_and_queued_work() -> None:
    pool = DaemonThreadPool(1, "runtime-test")
    gate = threading.Event()
    try:
        for _ in range(3):
            pool.submit(gate.wait, 10)
        deadline = time.monotonic() + 5
        while pool.pending != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        found = samples(RuntimeCollector(RuntimeProbes(pool=pool)).collect())
        assert found[("hostagent_executor_pending", ())] == 2
        assert found[("hostagent_threads", ())] == threading.active_count()
        # Unstarted probes: no task count to report, empty histograms.
        assert ("hostagent_asyncio_tasks", ()) not in found
        assert found[("hostagent_event_loop_lag_seconds_count", ())] == 0
    finally:
        gate.set()
        pool.shutdown()


async def test_names_pass_promtool() -> None:
    probes = RuntimeProbes(pool=DaemonThreadPool(1))
    probes.gc_pauses.start()
    task = asyncio.create_task(probes.loop_lag.run())
    try:
        gc.collect()
        await asyncio.sleep(0.25)
    finally:
        task.cancel()
        probes.gc_pauses.stop()
    families = RuntimeCollector(probes).collect()
    assert {f.name for f in families} == {
        "hostagent_event_loop_lag_seconds", "hostagent_gc_pause_seconds", "hostagent_threads",
        "hostagent_asyncio_tasks", "hostagent_executor_pending", "hostagent_http_requests",
        "hostagent_http_request_duration_seconds", "promhttp_metric_handler_requests",
        "hostagent_http_responses_cut_off"}
    assert promtool_problems(exposition(families)) == set()


def test_reload_keeps_the_runtime_job_unless_its_settings_change() -> None:
    probes = RuntimeProbes()
    old = Config()
    jobs = {job.name: job for job in build_jobs(old, probes=probes)}
    runtime = jobs["runtime"]
    assert isinstance(runtime.collector, RuntimeCollector)

    same = Config.model_validate({"logging": {"level": "debug"}})
    kept = {job.name: job for job in build_jobs(same, jobs, old, probes)}
    assert kept["runtime"] is runtime

    changed = Config.model_validate({"collectors": {"runtime": {"interval": 5}}})
    rebuilt = {job.name: job for job in build_jobs(changed, jobs, old, probes)}
    assert rebuilt["runtime"] is not runtime and rebuilt["runtime"].interval == 5
    assert rebuilt["cpu"] is jobs["cpu"]


async def test_agent_exports_runtime_metrics() -> None:
    config = Config.model_validate({
        "web": {"listen_address": "127.0.0.1:0"}, "scheduler": {"jitter": 0},
        "collectors": {"runtime": {"interval": 0.2}}})
    agent = Agent(config)
    async with running(agent) as base, aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        names: set[str] = set()
        for _ in range(100):
            async with session.get(f"{base}/metrics") as r:
                names = {f.name for f in text_string_to_metric_families(await r.text())}
            if "hostagent_asyncio_tasks" in names:
                break
            await asyncio.sleep(0.05)
        assert {"hostagent_event_loop_lag_seconds", "hostagent_gc_pause_seconds",
                "hostagent_threads", "hostagent_asyncio_tasks",
                "hostagent_executor_pending"} <= names
        assert agent.probes.gc_pauses._callback in gc.callbacks
    assert agent.probes.gc_pauses._callback not in gc.callbacks


class CountingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Counts the event loop's waits: each is a wake-up of an idle loop."""

    waits = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout > 0:
            CountingSelector.waits += 1
        return super().select(timeout)  # type: ignore[no-any-return]


def test_an_idle_agent_wakes_its_loop_only_for_its_timers() -> None:
    """What an idle agent costs is mostly its wake-ups: one collector not due in the window,
    no scrapes, no web config file, no systemd: in 10 s only the loop-lag probe's timer (15 s
    grid) may be due, besides the test's own sleep. A status line every 5 s for no systemd
    would add two, a status-history timer one."""
    config = Config.model_validate({
        "web": {"listen_address": "127.0.0.1:0"}, "scheduler": {"jitter": 0},
        "collectors": {name: {"enabled": name == "cpu", "interval": 120.0}
                       for name in BY_NAME}})

    async def scenario() -> int:
        agent = Agent(config)
        async with running(agent) as base:
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, base)
            await asyncio.sleep(0.5)  # start-up settles, the client's connection closes
            before = CountingSelector.waits
            await asyncio.sleep(10)
            return CountingSelector.waits - before

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(CountingSelector())
                        ) as runner:
        waits = runner.run(scenario())
    assert waits <= 2, waits


async def test_the_probe_timer_is_due_on_the_shared_grid() -> None:
    """Due on multiples of its period, as the other periodic timers, so they share wake-ups."""
    assert grid_delay(10.0, 5.0) == 5.0 and abs(grid_delay(13.5, 5.0) - 1.5) < 1e-9
    probe = LoopLagProbe()
    assert probe.period == 15.0
    probe.start()
    try:
        assert probe._handle is not None
        when = probe._handle.when()
        assert abs(when / 15.0 - round(when / 15.0)) < 1e-6, when
    finally:
        probe.stop()


async def test_collector_ticks_push_the_probes_own_timer_back() -> None:
    """A tick measured the loop: the probe's timer waits two periods from it, so with ticks at
    least that often it never wakes the loop; without ticks it keeps its period."""
    probe = LoopLagProbe(period=5.0)
    probe.start()
    try:
        assert probe._handle is not None
        loop = asyncio.get_running_loop()
        assert probe._handle.when() - loop.time() <= 5.0
        probe.observe_tick(0.002)
        assert probe._handle.when() - loop.time() > 9.9
        assert probe.lag.buckets()[1] == 0.002  # the tick's lateness counted
    finally:
        probe.stop()


async def test_collection_ticks_run_no_young_garbage_collections() -> None:
    """A tick's families live until the next tick replaces them: at Python's default young
    threshold (700) each tick of the default set paid young collections. After start the
    threshold is raised, so ticks run none; at shutdown it is put back."""
    before = gc.get_threshold()
    config = Config.model_validate({
        "web": {"listen_address": "127.0.0.1:0"}, "scheduler": {"jitter": 0},
        "collectors": {name: {"interval": 0.3} for name, d in BY_NAME.items() if d.default}})
    agent = Agent(config)
    async with running(agent) as base:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, base)

        def runs() -> int:
            return min(status.runs for status in agent.scheduler.statuses())

        start, young = runs(), gc.get_stats()[0]["collections"]
        deadline = time.monotonic() + 20
        while runs() < start + 6:
            assert time.monotonic() < deadline, "collectors did not tick"
            await asyncio.sleep(0.05)
        assert gc.get_stats()[0]["collections"] - young <= 1
    assert gc.get_threshold() == before


def test_a_tick_wakes_the_loop_for_its_timer_and_its_batch_only() -> None:
    """Per tick the loop wakes when the tick is due and when the batch's collectors are done;
    the render that follows installs itself from the render thread (its end woke the loop
    too, a third wake-up per tick)."""
    config = Config.model_validate({
        "web": {"listen_address": "127.0.0.1:0"}, "scheduler": {"jitter": 0},
        "collectors": {name: {"enabled": name == "cpu", "interval": 1.0} for name in BY_NAME}})

    async def scenario() -> tuple[int, int]:
        agent = Agent(config)
        async with running(agent) as base:
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, base)
            await asyncio.sleep(0.3)  # start-up settles, the client's connection closes
            runs, before = agent.scheduler.statuses()[0].runs, CountingSelector.waits
            generation = agent.renderer.current.generation
            await asyncio.sleep(5.1)
            assert agent.renderer.current.generation > generation, "ticks were rendered"
            return agent.scheduler.statuses()[0].runs - runs, CountingSelector.waits - before

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(CountingSelector())
                        ) as runner:
        ticks, waits = runner.run(scenario())
    assert ticks >= 4, ticks
    # The test's own sleep and a stray timer may add one each.
    assert waits <= 2 * ticks + 3, (ticks, waits)
