"""The status page's charts: a bounded in-memory history of a few host figures and of each
collector's duration, sampled from the snapshots the collectors already published.

Fixed-size rings of C doubles (8 bytes a point, POINTS points a series), so the memory is
bounded whatever the uptime: about 3 KB per series.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from agent.exposition.registry import Snapshot
from agent.exposition.status import CollectorStatus

POINTS = 360  # an hour and a half at one point per default 15 s collection


class Ring:
    """The last `size` values, oldest first; NaN marks a gap. It grows as values arrive (a
    fresh agent does not hold 90 minutes of empty points per series) and then wraps."""

    __slots__ = ("_next", "_size", "_values")

    def __init__(self, size: int = POINTS) -> None:
        self._size = size
        self._values = array("d")
        self._next = 0  # where the next value goes once full (the oldest value)

    def append(self, value: float) -> None:
        if len(self._values) < self._size:
            self._values.append(value)
            return
        self._values[self._next] = value
        self._next = (self._next + 1) % self._size

    def values(self) -> list[float]:
        return (self._values[self._next:] + self._values[:self._next]).tolist()

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    unit: str  # "%", "bytes/s" or "" (a plain number)


HOST_CHARTS = (
    Chart("cpu", "CPU busy", "%"),
    Chart("memory", "Memory used", "%"),
    Chart("load", "Load (1 min)", ""),
    Chart("disk", "Disk I/O (read + written)", "bytes/s"),
    Chart("network", "Network (received + sent)", "bytes/s"),
    Chart("filesystem", "Fullest filesystem", "%"),
)


# The families _sums reads.
_CHARTED = frozenset({
    "node_cpu_seconds", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
    "node_load1", "node_disk_read_bytes", "node_disk_written_bytes",
    "node_network_receive_bytes", "node_network_transmit_bytes", "node_filesystem_size_bytes",
    "node_filesystem_avail_bytes"})


def _sums(families: Iterable[Metric]) -> dict[str, float]:
    """The figures the charts need, summed over the host's series (NaN when absent)."""
    out = dict.fromkeys(("cpu_busy", "cpu_total", "mem_total", "mem_available", "load", "disk",
                         "network"), math.nan)
    fullest = math.nan
    sizes: dict[tuple[str, str], float] = {}
    avails: dict[tuple[str, str], float] = {}

    def add(key: str, value: float) -> None:
        out[key] = value if math.isnan(out[key]) else out[key] + value

    for family in families:
        name = family.name
        if name == "node_cpu_seconds":
            for s in family.samples:
                add("cpu_total", s.value)
                if s.labels.get("mode") not in ("idle", "iowait"):
                    add("cpu_busy", s.value)
        elif name == "node_memory_MemTotal_bytes" and family.samples:
            out["mem_total"] = family.samples[0].value
        elif name == "node_memory_MemAvailable_bytes" and family.samples:
            out["mem_available"] = family.samples[0].value
        elif name == "node_load1" and family.samples:
            out["load"] = family.samples[0].value
        elif name in ("node_disk_read_bytes", "node_disk_written_bytes"):
            for s in family.samples:
                add("disk", s.value)
        elif name in ("node_network_receive_bytes", "node_network_transmit_bytes"):
            for s in family.samples:
                if s.labels.get("device") != "lo":
                    add("network", s.value)
        elif name in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes"):
            into = sizes if name.endswith("size_bytes") else avails
            for s in family.samples:
                into[(s.labels.get("device", ""), s.labels.get("mountpoint", ""))] = s.value
    for key, size in sizes.items():
        if size > 0 and key in avails:
            used = 100.0 * (1.0 - avails[key] / size)
            fullest = used if math.isnan(fullest) else max(fullest, used)
    out["filesystem"] = fullest
    return out


class History:
    """sample() once per step; the page reads the rings. Rates are taken between two
    collections (the snapshots' own times), so a step shorter than a collector's interval
    repeats the latest rate instead of drawing zeros."""

    def __init__(self, points: int = POINTS) -> None:
        self.points = points
        self.times = Ring(points)
        self.host = {chart.key: Ring(points) for chart in HOST_CHARTS}
        self.durations: dict[str, Ring] = {}
        self._counters: dict[str, tuple[float, float]] = {}  # key: (value, collected at)
        self._rates: dict[str, float] = {}

    def _rate(self, key: str, value: float, stamp: float) -> float:
        previous = self._counters.get(key)
        if previous is None or stamp != previous[1]:
            self._counters[key] = (value, stamp)
            if previous is not None and stamp > previous[1]:
                delta = value - previous[0]
                # A counter reset (or a device gone) leaves a gap rather than a negative rate.
                self._rates[key] = delta / (stamp - previous[1]) if delta >= 0 else math.nan
        return self._rates.get(key, math.nan)

    def sample(self, snapshots: Iterable[Snapshot], statuses: Sequence[CollectorStatus],
               now: float) -> None:
        figures: dict[str, float] = {}
        stamps: dict[str, float] = {}
        for snapshot in snapshots:
            # Most snapshots have no family the charts read: one set lookup per family.
            charted = [family for family in snapshot.families if family.name in _CHARTED]
            if not charted:
                continue
            for key, value in _sums(charted).items():
                if not math.isnan(value):
                    figures[key], stamps[key] = value, snapshot.timestamp

        def rate(key: str) -> float:
            return self._rate(key, figures[key], stamps[key]) if key in figures else math.nan

        def figure(key: str) -> float:
            return figures.get(key, math.nan)

        busy, total = rate("cpu_busy"), rate("cpu_total")
        memory = math.nan
        if figure("mem_total") > 0:
            memory = 100.0 * (1.0 - figure("mem_available") / figure("mem_total"))
        self.times.append(now)
        self.host["cpu"].append(100.0 * busy / total if total > 0 else math.nan)
        self.host["memory"].append(memory)
        self.host["load"].append(figure("load"))
        self.host["disk"].append(rate("disk"))
        self.host["network"].append(rate("network"))
        self.host["filesystem"].append(figure("filesystem"))
        seen = set()
        for status in statuses:
            seen.add(status.name)
            ring = self.durations.get(status.name)
            if ring is None:  # a collector added by a reload: its earlier points are gaps
                ring = self.durations[status.name] = Ring(self.points)
                for _ in range(len(self.times) - 1):
                    ring.append(math.nan)
            last = status.last_duration
            ring.append(math.nan if last is None else last)
        for name in list(self.durations):
            if name not in seen:  # removed by a reload
                del self.durations[name]

    def memory_bytes(self) -> int:
        """What the rings hold: 8 bytes a point."""
        rings = [self.times, *self.host.values(), *self.durations.values()]
        return 8 * sum(len(ring) for ring in rings)
