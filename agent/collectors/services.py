"""Per systemd service accounting from the service's own cgroup: CPU, memory, OOM kills, I/O,
tasks and pressure (cgroup v2), or CPU, memory, OOM kills and tasks (v1) -- what cAdvisor gives
per container, here per system service, without reading a single process."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import list_dir, read_int, read_text

USER_HZ = float(os.sysconf("SC_CLK_TCK"))


def parse_flat_keyed(text: str) -> dict[str, float]:
    """'key value' lines (cpu.stat, memory.events, cpuacct.stat, memory.oom_control)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def parse_io_stat(text: str) -> dict[str, tuple[float, float]]:
    """io.stat 'MAJ:MIN rbytes=1 wbytes=2 ...' -> {device: (read bytes, written bytes)}."""
    out = {}
    for line in text.splitlines():
        device, *pairs = line.split()
        fields = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        out[device] = (float(fields.get("rbytes", 0)), float(fields.get("wbytes", 0)))
    return out


def parse_pressure_totals(text: str) -> dict[str, float]:
    """'some avg10=.. total=USEC' lines -> {'some': seconds, 'full': seconds}."""
    out = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        fields = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        if "total" in fields:
            out[kind] = int(fields["total"]) / 1e6
    return out


def service_dirs(slice_dir: Path) -> dict[str, Path]:
    """*.service cgroups under system.slice, and one level of sub-slices (getty@, ...)."""
    found = {}
    for name in list_dir(slice_dir):
        path = slice_dir / name
        if name.endswith(".service"):
            found[name] = path
        elif name.endswith(".slice"):
            found.update({n: path / n for n in list_dir(path) if n.endswith(".service")})
    return found


class ServiceAccounting:
    def __init__(self, sysfs: Path) -> None:
        self._root = sysfs / "fs" / "cgroup"

    def collect(self) -> list[Metric]:
        labels = ["service"]
        cpu = CounterMetricFamily("hostagent_service_cpu_seconds_total",
                                  "CPU time used by the service's cgroup.",
                                  labels=["service", "mode"])
        memory = GaugeMetricFamily("hostagent_service_memory_bytes",
                                   "Memory charged to the service's cgroup.", labels=labels)
        ooms = CounterMetricFamily("hostagent_service_oom_kills_total",
                                   "Processes of the service killed by the OOM killer.",
                                   labels=labels)
        tasks = GaugeMetricFamily("hostagent_service_tasks",
                                  "Tasks (processes and threads) in the service's cgroup.",
                                  labels=labels)
        io = CounterMetricFamily("hostagent_service_io_bytes_total",
                                 "Bytes the service's cgroup read from and wrote to each device.",
                                 labels=["service", "device", "direction"])
        pressure = CounterMetricFamily(
            "hostagent_service_pressure_seconds_total",
            "Time the service's tasks stalled on a resource (PSI totals).",
            labels=["service", "resource", "kind"])
        if (self._root / "cgroup.controllers").exists():
            self._v2(cpu, memory, ooms, tasks, io, pressure)
        else:
            self._v1(cpu, memory, ooms, tasks)
        return [f for f in (cpu, memory, ooms, tasks, io, pressure) if f.samples]

    def _v2(self, cpu: CounterMetricFamily, memory: GaugeMetricFamily,
            ooms: CounterMetricFamily, tasks: GaugeMetricFamily, io: CounterMetricFamily,
            pressure: CounterMetricFamily) -> None:
        for service, path in sorted(service_dirs(self._root / "system.slice").items()):
            stat = parse_flat_keyed(read_text(path / "cpu.stat") or "")
            if "user_usec" in stat:
                cpu.add_metric([service, "system"], stat.get("system_usec", 0) / 1e6)
                cpu.add_metric([service, "user"], stat["user_usec"] / 1e6)
            current = read_int(path / "memory.current")
            if current is not None:
                memory.add_metric([service], current)
            events = parse_flat_keyed(read_text(path / "memory.events") or "")
            if "oom_kill" in events:
                ooms.add_metric([service], events["oom_kill"])
            count = read_int(path / "pids.current")
            if count is not None:
                tasks.add_metric([service], count)
            for device, (read, written) in sorted(
                    parse_io_stat(read_text(path / "io.stat") or "").items()):
                io.add_metric([service, device, "read"], read)
                io.add_metric([service, device, "write"], written)
            for resource in ("cpu", "io", "memory"):
                totals = parse_pressure_totals(read_text(path / f"{resource}.pressure") or "")
                for kind, seconds in sorted(totals.items()):
                    pressure.add_metric([service, resource, kind], seconds)

    def _v1(self, cpu: CounterMetricFamily, memory: GaugeMetricFamily,
            ooms: CounterMetricFamily, tasks: GaugeMetricFamily) -> None:
        def services(controller: str) -> dict[str, Path]:
            return service_dirs(self._root / controller / "system.slice")

        for service, path in sorted(services("cpuacct").items()):
            stat = parse_flat_keyed(read_text(path / "cpuacct.stat") or "")
            if "user" in stat:
                cpu.add_metric([service, "system"], stat.get("system", 0) / USER_HZ)
                cpu.add_metric([service, "user"], stat["user"] / USER_HZ)
        for service, path in sorted(services("memory").items()):
            usage = read_int(path / "memory.usage_in_bytes")
            if usage is not None:
                memory.add_metric([service], usage)
            control = parse_flat_keyed(read_text(path / "memory.oom_control") or "")
            if "oom_kill" in control:
                ooms.add_metric([service], control["oom_kill"])
        for service, path in sorted(services("pids").items()):
            count = read_int(path / "pids.current")
            if count is not None:
                tasks.add_metric([service], count)
