"""softnet: per-CPU packet processing counters from /proc/net/softnet_stat (node_exporter 1.5).

Each line is one CPU's softnet_data in hex; node_exporter 1.5 labels it with the line's
position and exports the first three columns only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client.metrics_core import CounterMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

MIN_COLUMNS = 9  # the narrowest format, from Linux 2.6.23


class Softnet(NamedTuple):
    processed: int
    dropped: int
    times_squeezed: int


def parse_softnet(text: str) -> list[Softnet]:
    stats = []
    for line in text.splitlines():
        columns = line.split()
        if len(columns) < MIN_COLUMNS:
            raise ValueError(f"{len(columns)} columns in softnet_stat, expected {MIN_COLUMNS}+")
        processed, dropped, squeezed = (int(column, 16) for column in columns[:3])
        stats.append(Softnet(processed, dropped, squeezed))
    return stats


class SoftnetCollector:
    def __init__(self, procfs: Path) -> None:
        self._softnet_stat = procfs / "net" / "softnet_stat"

    def collect(self) -> list[Metric]:
        return softnet_families(parse_softnet(self._softnet_stat.read_text()))


def softnet_families(stats: list[Softnet]) -> list[Metric]:
    dropped = CounterMetricFamily("node_softnet_dropped_total", "Number of dropped packets",
                                  labels=["cpu"])
    processed = CounterMetricFamily("node_softnet_processed_total",
                                    "Number of processed packets", labels=["cpu"])
    squeezed = CounterMetricFamily("node_softnet_times_squeezed_total",
                                   "Number of times processing packets ran out of quota",
                                   labels=["cpu"])
    for cpu, stat in enumerate(stats):
        dropped.add_metric([str(cpu)], stat.dropped)
        processed.add_metric([str(cpu)], stat.processed)
        squeezed.add_metric([str(cpu)], stat.times_squeezed)
    return [dropped, processed, squeezed]


def create(context: Context, settings: Any) -> SoftnetCollector:
    return SoftnetCollector(context.procfs)
