"""schedstat: node_schedstat_* per CPU from /proc/schedstat, as node_exporter's latest release.
No /proc/schedstat (kernels without CONFIG_SCHEDSTATS) is no data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# procfs's pattern: the cpu number, then nine fields; running and waiting time (ns) and the
# number of timeslices are the last three.
CPU_LINE = re.compile(r"cpu(\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)")


def parse_schedstat(text: str) -> list[tuple[str, int, int, int]]:
    """(cpu, running ns, waiting ns, timeslices) per cpu line."""
    cpus = []
    for line in text.splitlines():
        match = CPU_LINE.search(line)
        if match:
            cpus.append((match[1], int(match[8]), int(match[9]), int(match[10])))
    return cpus


def schedstat_families(cpus: list[tuple[str, int, int, int]]) -> list[Metric]:
    running = CounterMetricFamily("node_schedstat_running_seconds",
                                  "Number of seconds CPU spent running a process.",
                                  labels=["cpu"])
    waiting = CounterMetricFamily("node_schedstat_waiting_seconds",
                                  "Number of seconds spent by processing waiting for this CPU.",
                                  labels=["cpu"])
    timeslices = CounterMetricFamily("node_schedstat_timeslices",
                                     "Number of timeslices executed by CPU.", labels=["cpu"])
    for cpu, running_ns, waiting_ns, slices in cpus:
        running.add_metric([cpu], running_ns / 1e9)
        waiting.add_metric([cpu], waiting_ns / 1e9)
        timeslices.add_metric([cpu], float(slices))
    return [running, timeslices, waiting] if cpus else []


class SchedstatCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "schedstat"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return schedstat_families(parse_schedstat(text))


def create(context: Context, settings: Any) -> SchedstatCollector:
    return SchedstatCollector(context.procfs)
