"""The queue against a loopback receiver that injects faults: retries, refusals, Retry-After,
hangs, connections closed mid-body, the disk budget and a restart with data on disk."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from prometheus_client.metrics_core import GaugeMetricFamily

from agent.exposition.registry import Registry, Snapshot
from agent.remote_write.encode import Batch
from agent.remote_write.pusher import Pusher
from agent.remote_write.queue import Queue
from agent.remote_write.settings import EndpointConfig, RemoteWriteConfig
from tests.rw_receivers import Fault, FaultServer, until


@pytest.fixture
def server():
    srv = FaultServer()
    yield srv
    srv.close()


def make_queue(tmp_path, url: str, **overrides) -> Queue:
    queue = {"shards": 2, "max_samples_per_send": 50, "batch_send_deadline": 0.05,
             "min_backoff": 0.01, "max_backoff": 0.05, **overrides.pop("queue", {})}
    endpoint = EndpointConfig(url=url, queue_config=queue, **overrides)
    return Queue(endpoint, tmp_path)


def series(n: int, name: str = "m", ms: int = 0) -> list[Batch]:
    """n series {__name__=name, i, job="t"} with values 0..n-1, at ms."""
    family = GaugeMetricFamily(name, "Test.", labels=["i"])
    for i in range(n):
        family.add_metric([f"{i:03d}"], float(i))
    return [Batch(name, {"job": "t"}, [family], ms)]


async def started(queue: Queue) -> Queue:
    await queue.open()
    queue.start()
    return queue


async def test_delivers_every_sample_in_order_with_the_required_headers(tmp_path, server):
    queue = await started(make_queue(tmp_path, server.url, headers={"X-Scope-OrgID": "t1"}))
    for tick in range(10):
        await queue.append(series(120, ms=1_000 + tick))
    await until(lambda: server.recorder.total() == 1200, "all samples")
    await until(lambda: queue.counters.samples_sent == 1200, "the count")
    assert (await queue.pending())[0] == 0
    await queue.stop()
    rec = server.recorder
    assert rec.violations == []
    assert rec.out_of_order() == []
    assert all(h["X-Scope-OrgID"] == "t1" for h in rec.requests)
    assert len(rec.samples) == 120
    assert all([t for t, _ in v] == list(range(1000, 1010)) for v in rec.samples.values())


async def test_5xx_is_retried_with_backoff_until_delivered(tmp_path, server):
    server.recorder.faults = [Fault(status=500, times=3)]
    queue = await started(make_queue(tmp_path, server.url, queue={"shards": 1}))
    await queue.append(series(10, ms=5))
    await until(lambda: server.recorder.total() == 10, "delivery after 500s")
    await queue.stop()
    assert len(server.recorder.attempts) == 4
    assert queue.counters.samples_retried == 30
    assert queue.counters.samples_failed == 0


async def test_429_waits_for_retry_after(tmp_path, server):
    server.recorder.faults = [Fault(status=429, retry_after="1", times=1)]
    queue = await started(make_queue(tmp_path, server.url, queue={"shards": 1}))
    await queue.append(series(5, ms=5))
    await until(lambda: server.recorder.total() == 5, "delivery after 429")
    await queue.stop()
    first, second = server.recorder.attempts[:2]
    assert second - first >= 1.0  # the header's second, not the 10 ms backoff


async def test_4xx_drops_the_batch_counts_it_and_moves_on(tmp_path, server):
    server.recorder.faults = [Fault(status=400, times=1)]
    queue = await started(make_queue(tmp_path, server.url, queue={"shards": 1}))
    await queue.append(series(7, "refused", ms=5))
    await until(lambda: queue.counters.samples_failed == 7, "the refusal to be counted")
    await queue.append(series(3, "accepted", ms=6))
    await until(lambda: server.recorder.total() == 3, "the next batch")
    await queue.stop()
    assert {dict(s)["__name__"] for s in server.recorder.samples} == {"accepted"}
    assert queue.counters.samples_retried == 0


async def test_a_hung_receiver_times_out_and_is_retried(tmp_path, server):
    server.recorder.faults = [Fault(status=503, hang=1.5, times=1)]
    queue = await started(make_queue(tmp_path, server.url, remote_timeout=0.3,
                                     queue={"shards": 1}))
    await queue.append(series(4, ms=5))
    await until(lambda: server.recorder.total() == 4, "delivery after a timeout")
    await queue.stop()
    assert "TimeoutError" in (queue.last_error or "") or queue.counters.samples_retried == 4


async def test_connection_closed_mid_body_is_retried(tmp_path, server):
    server.recorder.faults = [Fault(close_mid_body=True, times=2)]
    queue = await started(make_queue(tmp_path, server.url, queue={"shards": 1}))
    await queue.append(series(300, ms=5))
    await until(lambda: server.recorder.total() == 300, "delivery after dropped connections")
    await queue.stop()
    assert queue.counters.samples_retried == 100  # two requests of 50
    assert server.recorder.out_of_order() == []


async def test_disk_budget_drops_the_oldest_and_the_rest_arrives(tmp_path, server):
    server.recorder.faults = [Fault(status=503)]
    queue = await started(make_queue(
        tmp_path, server.url, wal={"max_bytes": 1 << 16, "segment_bytes": 1 << 13},
        queue={"shards": 1}))
    ticks = 300
    for tick in range(ticks):
        await queue.append(series(20, ms=1_000 + tick))
    await until(lambda: queue.wal.stats.dropped_samples > 0, "the budget to drop data")
    dropped = queue.wal.stats.dropped_samples
    server.recorder.faults = []
    await until(lambda: queue.counters.samples_sent + queue.wal.stats.dropped_samples
                == ticks * 20, "the rest")
    await queue.stop()
    per_tick = Counter(t for v in server.recorder.samples.values() for t, _ in v)
    assert set(per_tick.values()) == {20}  # whole ticks, no duplicates
    stamps = sorted(per_tick)
    # The newest arrived, up to the last tick; one hole where the oldest segments went (the
    # batch already in flight when they went was still delivered).
    assert stamps[-1] == 1_000 + ticks - 1
    holes = [b for a, b in itertools.pairwise(stamps) if b != a + 1]
    assert len(holes) <= 1 and len(stamps) < ticks
    assert server.recorder.total() == queue.counters.samples_sent
    assert queue.wal.stats.dropped_samples >= dropped


async def test_a_restart_resumes_from_disk(tmp_path, server):
    server.recorder.faults = [Fault(status=503)]
    queue = await started(make_queue(tmp_path, server.url))
    for tick in range(5):
        await queue.append(series(30, ms=2_000 + tick))
    await until(lambda: len(server.recorder.attempts) >= 2, "a failed attempt")
    await queue.stop()
    server.recorder.faults = []
    queue = await started(make_queue(tmp_path, server.url))
    await until(lambda: server.recorder.total() == 150, "the queued samples after restart")
    await queue.stop()
    assert server.recorder.out_of_order() == []


async def test_pusher_feeds_from_the_registry_reports_health_and_own_series(tmp_path, server):
    server.recorder.faults = [Fault(status=503)]
    registry = Registry()
    registry.publish(Snapshot.of("load", [GaugeMetricFamily("node_load1", "Load.", value=1)]))
    config = RemoteWriteConfig(directory=tmp_path, degraded_after=0.2, endpoints=[
        EndpointConfig(url=server.url, name="q", queue_config={
            "batch_send_deadline": 0.05, "min_backoff": 0.01, "max_backoff": 0.05},
            metadata_config={"send_interval": 0.1})])
    pusher = Pusher(config, registry, "127.0.0.1:9110", metrics_interval=0.05)
    await pusher.start()
    try:
        await until(lambda: pusher.status()[0], "the queue to be reported degraded")
        report = pusher.status()[1]["q"]
        assert not report["healthy"] and "HTTP 503" in report["last_error"]
        server.recorder.faults = []
        await until(lambda: not pusher.status()[0], "the queue to recover")

        def sent() -> float:
            own = registry.snapshots["remote_write"]
            return next(s.value for f in own.families for s in f.samples
                        if s.name == "hostagent_remote_write_samples_total")

        await until(lambda: sent() >= 1, "the own series to count the delivery")
        await until(lambda: "node_load1" in server.recorder.metadata, "metadata")
    finally:
        await pusher.stop()
    load = [s for s in server.recorder.samples if dict(s)["__name__"] == "node_load1"]
    assert len(load) == 1 and dict(load[0])["job"] == "hostagent"
    assert dict(load[0])["instance"].endswith(":9110")
    assert "node_load1" in server.recorder.metadata
