"""The agent's own runtime: event-loop lag, GC pauses, tasks, threads, queued collector work.

Probes record as things happen (a timer on the loop, a gc callback); collect() runs in a
worker thread and only reads what they recorded.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from agent.httpmetrics import RequestMetrics
from agent.pool import DaemonThreadPool

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)


class Histogram:
    """Thread-safe bucket counters, read out as HistogramMetricFamily takes them."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._labels = [*map(floatToGoString, self.bounds), "+Inf"]
        self._counts = [0] * len(self._labels)  # the last one is +Inf
        self._sum = 0.0
        self.observed = 0  # observations so far: whether anything changed since a reading
        # Reentrant: a collection can start inside buckets() (it allocates) and the GC
        # probe's callback then observes on the same thread.
        self._lock = threading.RLock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value
            self.observed += 1

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) pairs as HistogramMetricFamily takes them, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip(self._labels, counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        return cumulative, total


def grid_delay(now: float, period: float) -> float:
    """Seconds from now to the next multiple of period (a full period if now is on one)."""
    return period - now % period if now % period > 1e-3 else period


class LoopLagProbe:
    """Records how late timers fire; a blocked loop fires them late. Its own timer is one
    plain call_later callback every period (no task, no coroutine); the collectors' ticks
    report their own lateness through observe(), so a loop that has work to do is measured
    at every tick for free. On an idle agent each wake-up of the loop costs more than the
    work it does, hence a long period: a block longer than it always shows, a shorter one
    when it covers a due time. It also notes the number of tasks (which only the loop may
    look at) every TASKS_EVERY ticks."""

    TASKS_EVERY = 3

    def __init__(self, period: float = 15.0) -> None:
        self.period = period
        self.lag = Histogram(LAG_BUCKETS)
        self.tasks: int | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._ticks = 0

    def start(self) -> None:
        """Start ticking on the running loop (again after stop())."""
        self.stop()
        self._ticks = 0
        self._count_tasks()
        self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def run(self) -> None:
        """start(), then wait (costing nothing) until cancelled, and stop()."""
        self.start()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.stop()

    def observe(self, late: float) -> None:
        """A timer that fired `late` seconds after it was due (any thread may call it)."""
        self.lag.observe(max(0.0, late))

    def observe_tick(self, late: float) -> None:
        """A collector tick's timer that fired `late` seconds after it was due, on the loop:
        the loop was measured, so the probe's own timer is pushed back (two periods: ticks
        come with jitter), and never wakes the loop while ticks come at least that often."""
        self.observe(late)
        if self._handle is not None:
            self._handle.cancel()
            self._count(asyncio.get_running_loop(), 2 * self.period)

    def _count_tasks(self) -> None:
        self.tasks = len(asyncio.all_tasks())

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float | None = None) -> None:
        # Due on a grid of the loop's clock, as the agent's other periodic timers, so that
        # they share wake-ups instead of each waking the loop on its own phase.
        now = loop.time()
        delay = grid_delay(now, self.period) if delay is None else delay
        self._due = time.perf_counter() + delay
        self._handle = loop.call_at(now + delay, self._tick, loop)

    def _count(self, loop: asyncio.AbstractEventLoop, delay: float | None = None) -> None:
        """One more measurement: the tasks noted every TASKS_EVERY, the next one scheduled."""
        self._ticks += 1
        if self._ticks % self.TASKS_EVERY == 0:
            self._count_tasks()
        self._schedule(loop, delay)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lag.observe(max(0.0, time.perf_counter() - self._due))
        self._count(loop)


class GcPauses:
    """Times every garbage collection, per generation, through gc.callbacks."""

    def __init__(self) -> None:
        self.pauses = {generation: Histogram(GC_BUCKETS) for generation in range(3)}
        self._started = 0.0  # collections never overlap, so one start time suffices

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].observe(time.perf_counter() - self._started)


@dataclass(frozen=True)
class RuntimeProbes:
    """What the agent measures about itself. The Agent runs loop_lag and starts gc_pauses;
    unstarted probes simply record nothing."""

    loop_lag: LoopLagProbe = field(default_factory=LoopLagProbe)
    gc_pauses: GcPauses = field(default_factory=GcPauses)
    pool: DaemonThreadPool | None = None  # the collector pool, for its queue length
    requests: RequestMetrics = field(default_factory=RequestMetrics)  # the web middleware's


class RuntimeCollector:
    def __init__(self, probes: RuntimeProbes) -> None:
        self._probes = probes
        # The GC pauses family and the observation counts it was built at: collections are
        # rare, so it is handed out again most ticks (the renderer skips it at once).
        self._pauses: tuple[tuple[int, ...], Metric] | None = None

    def collect(self) -> list[Metric]:
        probes = self._probes
        lag = HistogramMetricFamily(
            "hostagent_event_loop_lag_seconds",
            "How late timers on the event loop fired (loop responsiveness).")
        lag.add_metric([], *probes.loop_lag.lag.buckets())
        out: list[Metric] = [lag, self._gc_pauses(), GaugeMetricFamily(
            "hostagent_threads", "Threads in the agent process.", value=threading.active_count())]
        if probes.loop_lag.tasks is not None:
            out.append(GaugeMetricFamily("hostagent_asyncio_tasks",
                                         "Tasks on the event loop.", value=probes.loop_lag.tasks))
        if probes.pool is not None:
            out.append(GaugeMetricFamily(
                "hostagent_executor_pending",
                "Collector runs queued for a worker thread and not yet started.",
                value=probes.pool.pending))
        out.extend(probes.requests.collect())
        return out

    def _gc_pauses(self) -> Metric:
        histograms = self._probes.gc_pauses.pauses
        observed = tuple(histogram.observed for histogram in histograms.values())
        if self._pauses is not None and self._pauses[0] == observed:
            return self._pauses[1]
        pauses = HistogramMetricFamily(
            "hostagent_gc_pause_seconds", "Duration of garbage collections.",
            labels=["generation"])
        for generation, histogram in histograms.items():
            pauses.add_metric([str(generation)], *histogram.buckets())
        self._pauses = (observed, pauses)
        return pauses


def create(context: Context, settings: Any) -> RuntimeCollector:
    return RuntimeCollector(context.probes or RuntimeProbes())
