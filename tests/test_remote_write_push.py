"""What the push sends besides the collectors' snapshots: the agent's own series (so a
push-only host has the series a scraped one has) and stale markers when series go."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from agent.exposition.registry import Registry, Snapshot
from agent.remote_write.pusher import Pusher
from agent.remote_write.settings import EndpointConfig, RemoteWriteConfig
from tests.rw_receivers import FaultServer, Series, is_stale, until, wait_until
from tests.test_process import AgentProcess

OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.1"


@pytest.fixture
def server():
    srv = FaultServer()
    yield srv
    srv.close()


def named(server: FaultServer, name: str) -> dict[Series, list[tuple[int, float]]]:
    with server.recorder.lock:
        return {k: list(v) for k, v in server.recorder.samples.items()
                if dict(k)["__name__"] == name}


async def test_own_series_and_stale_markers_for_a_collector_gone(tmp_path, server) -> None:
    registry = Registry()
    cpu = GaugeMetricFamily("node_cpu_x", "X.", labels=["cpu"])
    cpu.add_metric(["0"], 1)
    cpu.add_metric(["1"], 2)
    registry.publish(Snapshot.of("load", [GaugeMetricFamily("node_load1", "Load.", value=1)]))
    registry.publish(Snapshot.of("cpu", [cpu]))
    # A textfile family under a built-in name yields to it, and is counted as on /metrics.
    registry.publish(Snapshot.of("textfile", [GaugeMetricFamily("node_load1", "Load.", value=9),
                                              GaugeMetricFamily("site_x", "S.", value=3)]))
    asked: list[dict[str, int]] = []

    def own(dropped):
        asked.append(dict(dropped))
        success = GaugeMetricFamily("hostagent_collector_success", "S.", labels=["collector"])
        success.add_metric(["load"], 1)
        return [success]

    config = RemoteWriteConfig(directory=tmp_path, endpoints=[EndpointConfig(
        url=server.url, name="q", queue_config={"batch_send_deadline": 0.05},
        metadata_config={"send_interval": 0.1})])
    pusher = Pusher(config, registry, "127.0.0.1:9110", own=own)
    await pusher.start()
    try:
        await until(lambda: named(server, "hostagent_collector_success")
                    and len(named(server, "node_cpu_x")) == 2 and named(server, "site_x"),
                    "own series and the collectors' series")
        await until(lambda: "hostagent_collector_success" in server.recorder.metadata,
                    "own series' metadata")
        registry.remove("cpu")  # a failed collector: its series are gone
        await until(lambda: all(is_stale(v[-1][1]) for v in named(server, "node_cpu_x").values()),
                    "stale markers for the collector's series")
    finally:
        await pusher.stop()
    assert {"textfile": 1} in asked  # what hostagent_collector_dropped_families reports
    assert {v for values in named(server, "node_load1").values() for _, v in values} == {1.0}
    for values in named(server, "node_cpu_x").values():
        assert [is_stale(v) for _, v in values] == [False] * (len(values) - 1) + [True]
    assert not any(is_stale(v) for values in named(server, "node_load1").values()
                   for _, v in values)
    assert server.recorder.violations == [] and server.recorder.out_of_order() == []


def series_set(pairs) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(name, labels without instance, job and empty values), as a receiver stores them."""
    out = set()
    for name, labels in pairs:
        kept = tuple(sorted((k, v) for k, v in labels.items()
                            if v and k not in ("instance", "job", "__name__")))
        out.add((name, kept))
    return out


def test_a_pushed_host_has_the_series_of_a_scraped_one(tmp_path: Path, server) -> None:
    config = {"web": {"listen_address": "127.0.0.1:0"},
              "remote_write": {"directory": str(tmp_path / "queue"), "endpoints": [
                  {"url": server.url, "queue_config": {"batch_send_deadline": 0.1}}]}}
    (tmp_path / "agent.yml").write_text(yaml.safe_dump(config))
    agent = AgentProcess("--config", str(tmp_path / "agent.yml"))
    try:
        agent.wait_ready()

        def scraped() -> set:
            # As Prometheus scrapes: OpenMetrics first (le="1.0", as Prometheus 3 normalizes
            # the classic format's le="1" too, and as the families carry it).
            request = urllib.request.Request(f"http://{agent.address}/metrics",
                                             headers={"Accept": OPENMETRICS_ACCEPT})
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read().decode()
            return series_set((s.name, s.labels) for f in
                              text_string_to_metric_families(body) for s in f.samples)

        def pushed() -> set:
            with server.recorder.lock:
                return series_set((dict(k)["__name__"], dict(k))
                                  for k in server.recorder.samples)

        first = scraped()
        assert {n for n, _ in first} >= {"hostagent_collector_success", "process_cpu_seconds_total",
                                         "python_gc_objects_collected_total",
                                         "node_scrape_collector_success", "hostagent_build_info"}
        missing: set = set()

        def caught_up() -> bool:
            missing.clear()
            missing.update(scraped() - pushed())
            return not missing

        try:
            wait_until(caught_up, "every scraped series pushed", timeout=20)
        except AssertionError:
            raise AssertionError(f"never pushed: {sorted(missing)[:10]}") from None
        extra = pushed() - first - scraped()
        assert not extra, sorted(extra)[:10]
    finally:
        agent.proc.terminate()
        agent.proc.wait(timeout=15)
