"""cpu: node_cpu_seconds_total and node_cpu_guest_seconds_total from /proc/stat."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# An idle counter that goes back this far means the CPU was hot-plugged: start over.
JUMP_BACK_SECONDS = 3.0


@dataclass(frozen=True)
class CpuTimes:
    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0


def parse_stat_cpus(text: str, user_hz: float) -> dict[str, CpuTimes]:
    """Per-CPU lines of /proc/stat ('cpu0 ...'), in seconds; the aggregate 'cpu' line is skipped."""
    cpus = {}
    names = [f.name for f in fields(CpuTimes)]
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        label, *values = line.split()
        seconds = [int(v) / user_hz for v in values[: len(names)]]
        cpus[label[3:]] = CpuTimes(**dict(zip(names, seconds, strict=False)))
    return cpus


def keep_monotonic(old: CpuTimes | None, new: CpuTimes) -> CpuTimes:
    """Counters never go backwards (the kernel's can, by a tick): keep the larger value."""
    if old is None or old.idle - new.idle >= JUMP_BACK_SECONDS:
        return new
    kept = {f.name: max(getattr(old, f.name), getattr(new, f.name)) for f in fields(CpuTimes)}
    return replace(new, **kept)


class CpuCollector:
    def __init__(self, procfs: Path) -> None:
        self._stat = procfs / "stat"
        self._user_hz = float(os.sysconf("SC_CLK_TCK"))
        self._last: dict[str, CpuTimes] = {}

    def collect(self) -> list[Metric]:
        parsed = parse_stat_cpus(self._stat.read_text(), self._user_hz)
        self._last = {cpu: keep_monotonic(self._last.get(cpu), times)
                      for cpu, times in parsed.items()}
        return cpu_families(self._last)


def cpu_families(cpus: dict[str, CpuTimes]) -> list[Metric]:
    seconds = CounterMetricFamily(
        "node_cpu_seconds", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"])
    guest = CounterMetricFamily(
        "node_cpu_guest_seconds", "Seconds the CPUs spent in guests (VMs) for each mode.",
        labels=["cpu", "mode"])
    for cpu, times in cpus.items():
        for mode in MODES:
            seconds.add_metric([cpu, mode], getattr(times, mode))
        # Guest time is also part of user and nice (as in node_exporter); shown separately.
        guest.add_metric([cpu, "user"], times.guest)
        guest.add_metric([cpu, "nice"], times.guest_nice)
    return [seconds, guest]


def create(context: Context, settings: Any) -> CpuCollector:
    return CpuCollector(context.procfs)
