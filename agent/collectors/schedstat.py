"""schedstat: node_schedstat_* per CPU from /proc/schedstat, as node_exporter's latest release.
No /proc/schedstat (kernels without CONFIG_SCHEDSTATS) is no data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import family, read_file_bytes, sample

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
    if not cpus:
        return []
    running = family("node_schedstat_running_seconds",
                     "Number of seconds CPU spent running a process.", "counter")
    waiting = family("node_schedstat_waiting_seconds",
                     "Number of seconds spent by processing waiting for this CPU.", "counter")
    timeslices = family("node_schedstat_timeslices", "Number of timeslices executed by CPU.",
                        "counter")
    for cpu, running_ns, waiting_ns, slices in cpus:
        running.samples.append(sample("node_schedstat_running_seconds_total", {"cpu": cpu},
                                      running_ns / 1e9))
        waiting.samples.append(sample("node_schedstat_waiting_seconds_total", {"cpu": cpu},
                                      waiting_ns / 1e9))
        timeslices.samples.append(sample("node_schedstat_timeslices_total", {"cpu": cpu},
                                         float(slices)))
    return [running, timeslices, waiting]


class SchedstatCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = str(procfs / "schedstat")

    def collect(self) -> list[Metric]:
        try:
            text = read_file_bytes(self._path).decode()
        except FileNotFoundError:
            return []
        return schedstat_families(parse_schedstat(text))


def create(context: Context, settings: Any) -> SchedstatCollector:
    return SchedstatCollector(context.procfs)
