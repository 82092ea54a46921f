"""The real agent pushing to a real Prometheus (remote write receiver) and a real
VictoriaMetrics: every sample arrives with its labels and timestamp, across a receiver outage
and across the agent being killed with SIGKILL in the middle of one.

Beside the real receiver the agent also pushes to a loopback recorder that never goes down:
what it got is what the agent collected, and all of it must be found in the real receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import GaugeMetricFamily

from agent.exposition.registry import Registry, Snapshot
from agent.remote_write.pusher import Pusher
from agent.remote_write.settings import EndpointConfig, RemoteWriteConfig
from tests.rw_receivers import (
    FaultServer,
    PrometheusReceiver,
    Receiver,
    VictoriaMetricsReceiver,
    wait_until,
)
from tests.test_process import AgentProcess

pytestmark = pytest.mark.realtool
INSTANCE = "test-host:9110"


@pytest.fixture
def recorder() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.close()


def agent_config(tmp_path: Path, receiver: Receiver, recorder: FaultServer) -> Path:
    queue = {"batch_send_deadline": 0.2, "min_backoff": 0.05, "max_backoff": 0.5}
    config = {
        "web": {"listen_address": "127.0.0.1:0"},
        "collectors": {"load": {"interval": 1}, "memory": {"interval": 1}},
        "remote_write": {
            "directory": str(tmp_path / "queue"),
            "external_labels": {"instance": INSTANCE},
            "endpoints": [
                {"url": receiver.url, "name": "real", "queue_config": queue},
                {"url": recorder.url, "name": "recorder", "queue_config": queue},
            ],
        },
    }
    path = tmp_path / "agent.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(config: Path) -> AgentProcess:
    return AgentProcess("--config", str(config), "--collector.disable-defaults",
                        "--collector.load", "--collector.memory")


def stop(agent: AgentProcess, kill: bool = False) -> None:
    if kill:
        agent.proc.kill()
    else:
        agent.proc.terminate()
    agent.proc.wait(timeout=15)


def load_stamps(recorder: FaultServer) -> list[int]:
    return sorted(t for labels, values in recorder.recorder.samples.items()
                  if dict(labels)["__name__"] == "node_load1" for t, _ in values)


def assert_all_arrived(receiver: Receiver, recorder: FaultServer) -> None:
    selector = '{job="hostagent"}'

    def missing() -> set:
        return recorder.recorder.points() - receiver.points(selector)

    try:
        wait_until(lambda: not missing(), "every recorded sample in the receiver")
    except AssertionError:
        lost = missing()
        raise AssertionError(f"{len(lost)} samples never arrived, e.g. {sorted(lost)[:3]}") \
            from None


@pytest.mark.parametrize("kind,kill", [(VictoriaMetricsReceiver, False),
                                       (PrometheusReceiver, True)],
                         ids=["victoria-metrics-outage", "prometheus-outage-sigkill"])
def test_nothing_lost_across_an_outage(tmp_path, recorder, kind, kill) -> None:
    receiver = kind(tmp_path / "data")
    receiver.start()
    agent = start_agent(agent_config(tmp_path, receiver, recorder))
    try:
        wait_until(lambda: len(load_stamps(recorder)) >= 2, "samples before the outage")
        receiver.stop()
        outage_start = time.time() * 1000
        wait_until(lambda: sum(t > outage_start for t in load_stamps(recorder)) >= 2,
                   "samples collected during the outage")
        if kill:
            stop(agent, kill=True)
            agent = start_agent(agent_config(tmp_path, receiver, recorder))
            wait_until(lambda: sum(t > outage_start for t in load_stamps(recorder)) >= 4,
                       "samples collected after the restart")
        receiver.start()
        outage_end = time.time() * 1000
        wait_until(lambda: sum(t > outage_end for t in load_stamps(recorder)) >= 1,
                   "samples after the outage")
        assert_all_arrived(receiver, recorder)
    finally:
        stop(agent)
        receiver.stop()

    rec = recorder.recorder
    assert rec.violations == []
    if not kill:  # a kill may resend what was delivered but not yet marked
        assert rec.out_of_order() == []
    during = [t for t in load_stamps(recorder) if outage_start < t < outage_end]
    assert len(during) >= 2
    receiver.start()
    try:
        stored = receiver.points('node_load1{job="hostagent"}')
    finally:
        receiver.stop()
    labels = {dict(series)["instance"] for series, _ in stored}
    assert labels == {INSTANCE}
    assert {t for _, t in stored} >= set(during)


async def test_prometheus_sees_a_series_end_at_its_stale_marker(tmp_path) -> None:
    """A series a collector stops reporting is gone from Prometheus's instant queries at once,
    not five minutes later, as when a scrape loses it."""
    receiver = PrometheusReceiver(tmp_path / "data")
    receiver.start()
    registry = Registry()

    def publish(*devices: str) -> None:
        family = GaugeMetricFamily("node_x", "X.", labels=["device"])
        for device in devices:
            family.add_metric([device], 1)
        registry.publish(Snapshot.of("disk", [family]))

    def instant() -> set[str]:
        body = receiver.get_json("/api/v1/query", query='node_x{job="stale"}')
        return {r["metric"]["device"] for r in body["data"]["result"]}

    config = RemoteWriteConfig(directory=tmp_path / "queue", external_labels={"job": "stale"},
                               endpoints=[EndpointConfig(url=receiver.url, queue_config={
                                   "batch_send_deadline": 0.05})])
    pusher = Pusher(config, registry, "127.0.0.1:9110", poll_interval=0.05)
    publish("sda", "sdb")
    await pusher.start()
    try:
        await asyncio.to_thread(wait_until, lambda: instant() == {"sda", "sdb"}, "both series")
        publish("sda")
        await asyncio.to_thread(wait_until, lambda: instant() == {"sda"}, "sdb to end")
    finally:
        await pusher.stop()
        receiver.stop()
