"""The status page's history: rates between collections, gaps, a fixed memory bound."""

from __future__ import annotations

import math
import re

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agent.exposition.registry import Snapshot
from agent.exposition.status import CollectorStatus
from agent.history import History, Ring
from agent.status_page import PageFacts, render_status_page


def cpu(idle: float, user: float, at: float) -> Snapshot:
    family = CounterMetricFamily("node_cpu_seconds", "", labels=["cpu", "mode"])
    family.add_metric(["0", "idle"], idle)
    family.add_metric(["0", "user"], user)
    return Snapshot("cpu", (family,), at)


def memory(total: float, available: float, at: float) -> Snapshot:
    return Snapshot("meminfo", (GaugeMetricFamily("node_memory_MemTotal_bytes", "", total),
                                GaugeMetricFamily("node_memory_MemAvailable_bytes", "",
                                                  available)), at)


def network(lo: float, eth: float, at: float) -> Snapshot:
    family = CounterMetricFamily("node_network_receive_bytes", "", labels=["device"])
    family.add_metric(["lo"], lo)
    family.add_metric(["eth0"], eth)
    return Snapshot("netdev", (family,), at)


def status(name: str, duration: float | None) -> CollectorStatus:
    return CollectorStatus(name, 15, 10, 1, True, duration, 0.0, None, 0, 0)


def test_ring_keeps_the_last_values_in_order() -> None:
    ring = Ring(3)
    for value in range(5):
        ring.append(value)
    assert ring.values() == [2, 3, 4] and len(ring) == 3


def test_rates_between_collections_and_gauges() -> None:
    history = History()
    history.sample([cpu(10, 10, 100), memory(1000, 250, 100), network(0, 0, 100)],
                   [status("cpu", 0.001)], 100.5)
    # One collection later: 3 s busy of 4 s; loopback traffic does not count.
    history.sample([cpu(11, 13, 104), memory(1000, 500, 104), network(9999, 400, 104)],
                   [status("cpu", 0.002)], 104.5)
    # The same collection again (the step is shorter than the interval): the rate repeats.
    history.sample([cpu(11, 13, 104), memory(1000, 500, 104), network(9999, 400, 104)],
                   [status("cpu", 0.002)], 105)
    cpu_values = history.host["cpu"].values()
    assert math.isnan(cpu_values[0]) and cpu_values[1:] == [75.0, 75.0]
    assert history.host["memory"].values() == [75.0, 50.0, 50.0]
    assert history.host["network"].values()[1:] == [100.0, 100.0]
    assert all(math.isnan(v) for v in history.host["load"].values())  # no source: gaps
    assert history.durations["cpu"].values() == [0.001, 0.002, 0.002]


def test_a_counter_reset_is_a_gap_not_a_negative_rate() -> None:
    history = History()
    for at, value in ((0, 100), (10, 200), (20, 50), (30, 150)):
        history.sample([network(0, value, at)], [], at)
    values = history.host["network"].values()
    assert values[1] == 10.0 and math.isnan(values[2]) and values[3] == 10.0


def test_rings_grow_as_points_arrive() -> None:
    history = History(points=50)
    assert history.memory_bytes() == 0
    for step in range(3):
        history.sample([memory(1000, step, step)], [status("cpu", 0.001)], step)
    assert history.memory_bytes() == 8 * 3 * (1 + 6 + 1)
    assert history.host["memory"].values() == [100.0, 99.9, 99.8]


def test_memory_is_bounded_whatever_the_uptime() -> None:
    history = History(points=50)
    for step in range(500):
        history.sample([memory(1000, step, step)], [status("cpu", 0.001)], step)
    assert len(history.times) == 50 and len(history.host["memory"]) == 50
    assert history.host["memory"].values()[-1] == 100.0 * (1 - 499 / 1000)
    assert history.memory_bytes() == 8 * 50 * (1 + 6 + 1)


def test_page_draws_one_point_per_value_and_breaks_lines_at_gaps() -> None:
    history = History()
    for at in range(5):
        history.sample([memory(1000, 100 * at, at), cpu(at, at, at)], [status("cpu", 0.001)],
                       at)
    report = {"status": "ok", "uptime_seconds": 3700.0, "collectors": {"cpu": {
        "success": True, "stale": False, "interval_seconds": 15.0,
        "last_duration_seconds": 0.001, "last_success_age_seconds": 75.0, "last_error": None}}}
    page = render_status_page(report, ["textfile"], None,
                              PageFacts(hostname="web1", history=history, series={"cpu": 8}))
    assert "<title>web1 · hostagent</title>" in page and "1 h 1 min" in page
    assert 'data-samples="5"' in page

    def points(chart: str) -> int:
        card = re.search(rf'data-chart="{chart}".*?</svg>', page, re.S).group(0)  # type: ignore[union-attr]
        drawn = sum(len(p.split()) for p in re.findall(r'<polyline points="([^"]*)"', card))
        assert f'data-points="{drawn}"' in card
        return drawn

    assert points("memory") == 5 and points("cpu") == 4 and points("load") == 0
    assert ">1 min 15 s</td>" in page and '<td class="num">8</td>' in page
