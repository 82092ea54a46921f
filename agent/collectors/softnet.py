"""softnet: per-CPU packet processing counters from /proc/net/softnet_stat, as node_exporter's
latest release reads them (procfs): one line per online CPU's softnet_data, in hex.

The columns a line has depend on the kernel: 9 (Linux 2.6.23: processed, dropped,
time_squeezed, five zeros, cpu_collision), 10 (2.6.39: + received_rps), 11 (4.18: +
flow_limit_count), 13 (5.14: + backlog length and the CPU's id). The cpu label is that id where
the line has it, else the line's position; a column the line lacks reads 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

MIN_COLUMNS = 9
UINT32_MAX = 0xFFFFFFFF
_HEX = re.compile(r"[0-9a-fA-F]+")


class Softnet(NamedTuple):
    processed: int
    dropped: int
    times_squeezed: int
    cpu_collision: int = 0
    received_rps: int = 0
    flow_limit_count: int = 0
    backlog_len: int = 0
    cpu: int = 0


def _hex32(text: str) -> int:
    value = int(text, 16) if _HEX.fullmatch(text) else -1
    if not 0 <= value <= UINT32_MAX:
        raise ValueError(f"not a 32-bit hexadecimal value in softnet_stat: {text!r}")
    return value


def parse_softnet(text: str) -> list[Softnet]:
    stats = []
    for position, line in enumerate(text.splitlines()):
        columns = line.split()
        width = len(columns)
        if width < MIN_COLUMNS:
            raise ValueError(f"{width} columns in softnet_stat, expected {MIN_COLUMNS}+")
        processed, dropped, squeezed, *_, collision = (_hex32(c) for c in columns[:9])
        rps = _hex32(columns[9]) if width >= 10 else 0
        flow_limit = _hex32(columns[10]) if width >= 11 else 0
        if width >= 13:
            backlog, index = _hex32(columns[11]), _hex32(columns[12])
        else:
            backlog, index = 0, position
        stats.append(Softnet(processed, dropped, squeezed, collision, rps, flow_limit, backlog,
                             index))
    return stats


class SoftnetCollector:
    def __init__(self, procfs: Path) -> None:
        self._softnet_stat = procfs / "net" / "softnet_stat"

    def collect(self) -> list[Metric]:
        return softnet_families(parse_softnet(self._softnet_stat.read_text()))


def softnet_families(stats: list[Softnet]) -> list[Metric]:
    labels = ["cpu"]
    backlog = GaugeMetricFamily("node_softnet_backlog_len", "Softnet backlog status",
                                labels=labels)
    collision = CounterMetricFamily(
        "node_softnet_cpu_collision_total",
        "Number of collision occur while obtaining device lock while transmitting",
        labels=labels)
    dropped = CounterMetricFamily("node_softnet_dropped_total", "Number of dropped packets",
                                  labels=labels)
    flow_limit = CounterMetricFamily("node_softnet_flow_limit_count_total",
                                     "Number of times flow limit has been reached",
                                     labels=labels)
    processed = CounterMetricFamily("node_softnet_processed_total",
                                    "Number of processed packets", labels=labels)
    rps = CounterMetricFamily("node_softnet_received_rps_total",
                              "Number of times cpu woken up received_rps", labels=labels)
    squeezed = CounterMetricFamily("node_softnet_times_squeezed_total",
                                   "Number of times processing packets ran out of quota",
                                   labels=labels)
    for stat in stats:
        cpu = [str(stat.cpu)]
        backlog.add_metric(cpu, stat.backlog_len)
        collision.add_metric(cpu, stat.cpu_collision)
        dropped.add_metric(cpu, stat.dropped)
        flow_limit.add_metric(cpu, stat.flow_limit_count)
        processed.add_metric(cpu, stat.processed)
        rps.add_metric(cpu, stat.received_rps)
        squeezed.add_metric(cpu, stat.times_squeezed)
    return [backlog, collision, dropped, flow_limit, processed, rps, squeezed]


def create(context: Context, settings: Any) -> SoftnetCollector:
    return SoftnetCollector(context.procfs)
