"""cpu: node_cpu_seconds_total and node_cpu_guest_seconds_total from /proc/stat, and as
node_exporter's latest release node_cpu_isolated, the thermal throttle counters per core and
package, node_cpu_online, and with --collector.cpu.info node_cpu_info and the flags and bugs
of /proc/cpuinfo selected by --collector.cpu.info.flags-include / .bugs-include."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from agent.collectors.common import (
    family,
    numbered,
    open_dir,
    parse_int,
    read_file_bytes,
    read_text,
    sample,
)
from agent.collectors.heldfiles import HeldFiles, kernel_generated

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


_TIMES = tuple(f.name for f in fields(CpuTimes))


_IDLE = _TIMES.index("idle")


def parse_stat_cpus(text: str, user_hz: float) -> dict[str, CpuTimes]:
    """Per-CPU lines of /proc/stat ('cpu0 ...'), in seconds; the aggregate 'cpu' line is skipped."""
    return {cpu: CpuTimes(*times) for cpu, times in _stat_times(text, user_hz).items()}


def keep_monotonic(old: CpuTimes | None, new: CpuTimes) -> CpuTimes:
    """Counters never go backwards (the kernel's can, by a tick): keep the larger value."""
    if old is None:
        return new
    return CpuTimes(*_monotonic(tuple(getattr(old, name) for name in _TIMES),
                                tuple(getattr(new, name) for name in _TIMES)))


def _monotonic(old: tuple[float, ...], new: tuple[float, ...]) -> tuple[float, ...]:
    """new, each value at least old's, unless idle went back JUMP_BACK_SECONDS or more (the
    CPU was hot-plugged: it starts over)."""
    if not old or old[_IDLE] - new[_IDLE] >= JUMP_BACK_SECONDS:
        return new
    return tuple(map(max, old, new))  # max keeps old's value when equal
_SECONDS_HELP = "Seconds the CPUs spent in each mode."
_GUEST_HELP = "Seconds the CPUs spent in guests (VMs) for each mode."


def _stat_times(text: str, user_hz: float) -> dict[str, tuple[float, ...]]:
    """Each CPU's times in seconds, CpuTimes' fields in order (missing ones 0.0)."""
    cpus = {}
    padding = (0.0,) * len(_TIMES)
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        label, *values = line.split()
        times = tuple([int(v) / user_hz for v in values[:len(_TIMES)]])
        cpus[label[3:]] = times + padding[len(times):] if len(times) < len(_TIMES) else times
    return cpus


class _CpuSeries:
    """One CPU's samples of node_cpu_seconds_total (MODES) and node_cpu_guest_seconds_total
    (user, nice) with the values they were built for: a value that did not move (most
    modes of most CPUs, every tick) keeps its sample, which the renderer compares at once."""

    __slots__ = ("guest", "seconds", "times")

    def __init__(self, cpu: str) -> None:
        self.times: tuple[float, ...] = ()
        self.seconds = [sample("node_cpu_seconds_total", {"cpu": cpu, "mode": mode}, -1.0)
                        for mode in MODES]
        self.guest = [sample("node_cpu_guest_seconds_total", {"cpu": cpu, "mode": mode}, -1.0)
                      for mode in ("user", "nice")]

    def update(self, times: tuple[float, ...]) -> None:
        """times: kept monotonic, as keep_monotonic does; the samples of those that moved
        built again."""
        times = self.times = _monotonic(self.times, times)
        for samples, offset in ((self.seconds, 0), (self.guest, len(MODES))):
            for index, current in enumerate(samples):
                value = times[offset + index]
                if current.value != value:
                    samples[index] = sample(current.name, current.labels, value)


class CpuCollector:
    def __init__(self, procfs: Path, sysfs: Path | None = None, guest: bool = True,
                 info: bool = False, flags_include: str | None = None,
                 bugs_include: str | None = None) -> None:
        self._stat = str(procfs / "stat")
        self._files = HeldFiles()
        self._cpuinfo = procfs / "cpuinfo"
        self._cpus = None if sysfs is None else str(sysfs / "devices/system/cpu")
        self._user_hz = float(os.sysconf("SC_CLK_TCK"))
        self._series: dict[str, _CpuSeries] = {}
        self._families: list[Metric] = []  # the last seconds and guest families
        self._guest = guest
        self._info = info or bool(flags_include) or bool(bugs_include)
        self._flags = re.compile(flags_include) if flags_include else None
        self._bugs = re.compile(bugs_include) if bugs_include else None
        # node_exporter reads the isolated list once, at start.
        isolated = None if self._cpus is None else read_text(os.path.join(self._cpus, "isolated"))
        self._isolated = None if isolated is None else parse_cpu_list(isolated)
        self._isolated_family = family(
            "node_cpu_isolated",
            "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
            "gauge", [sample("node_cpu_isolated", {"cpu": str(cpu)}, 1.0)
                      for cpu in self._isolated or ()])
        self._sysfs = _CpuFiles(self._cpus, self._files) if self._cpus is not None else None

    def collect(self) -> list[Metric]:
        families: list[Metric] = []
        if self._info:
            families += cpuinfo_families(parse_cpuinfo(_read(self._cpuinfo)),
                                         self._flags, self._bugs)
        families += self._times()
        if self._isolated:
            families.append(self._isolated_family)
        if self._sysfs is not None:
            families += self._sysfs.families()
        return families

    def _times(self) -> list[Metric]:
        """cpu_families of the kept-monotonic times, as parse_stat_cpus and keep_monotonic
        give them; a family none of whose samples changed is handed out again."""
        parsed = _stat_times(self._files.read(self._stat).decode(errors="replace"), self._user_hz)
        known = self._series
        series = {}
        for cpu, times in parsed.items():
            entry = known.get(cpu)
            if entry is None:
                entry = _CpuSeries(cpu)
            entry.update(times)
            series[cpu] = entry
        self._series = series  # a CPU gone from /proc/stat starts over when it is back
        seconds: list[Sample] = []
        guest: list[Sample] = []
        for entry in series.values():
            seconds += entry.seconds
            guest += entry.guest
        last = self._families
        out = [last[0] if last and last[0].samples == seconds
               else family("node_cpu_seconds", _SECONDS_HELP, "counter", seconds)]
        if self._guest:
            out.append(last[1] if len(last) > 1 and last[1].samples == guest
                       else family("node_cpu_guest_seconds", _GUEST_HELP, "counter", guest))
        self._families = out
        return out


def _read(path: Path) -> str:
    return read_file_bytes(path).decode(errors="replace")


def parse_cpu_list(text: str) -> list[int]:
    """The kernel's cpu list format: "1,3-5,9" -> [1, 3, 4, 5, 9]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        start = parse_int(first)
        end = parse_int(last) if last else start
        if start is None or end is None:
            continue
        cpus.extend(range(start, end + 1))
    return cpus


def _cpu_dirs(cpus: str) -> list[str]:
    """cpu[0-9]* under cpus, as glob matches it (directories or not)."""
    return [f"{cpus}/{name}" for name in numbered(cpus, "cpu")]


_ThrottleCounts = tuple[list[tuple[tuple[int, int], int | None]], list[tuple[int, int | None]]]


def _throttle_counts(dirs: list[str], uint: Callable[[str], int | None]) -> _ThrottleCounts:
    """(core, count) and (package, count), sorted: each read once per core and package."""
    cores: dict[tuple[int, int], int | None] = {}
    packages: dict[int, int | None] = {}
    for cpu in dirs:
        # cpu has no trailing slash: f-strings join as os.path.join would, at less cost.
        package = uint(f"{cpu}/topology/physical_package_id")
        core = uint(f"{cpu}/topology/core_id")
        if package is None or core is None:
            continue
        if (package, core) not in cores:
            cores[(package, core)] = uint(f"{cpu}/thermal_throttle/core_throttle_count")
        if package not in packages:
            packages[package] = uint(f"{cpu}/thermal_throttle/package_throttle_count")
    return sorted(cores.items()), sorted(packages.items())


def _throttle_families(counts: _ThrottleCounts) -> list[Metric]:
    cores, packages = counts
    core_family = family(
        "node_cpu_core_throttles", "Number of times this CPU core has been throttled.",
        "counter", [sample("node_cpu_core_throttles_total",
                           {"package": str(package), "core": str(core)}, float(count))
                    for (package, core), count in cores if count is not None])
    package_family = family(
        "node_cpu_package_throttles", "Number of times this CPU package has been throttled.",
        "counter", [sample("node_cpu_package_throttles_total", {"package": str(package)},
                           float(count))
                    for package, count in packages if count is not None])
    return [f for f in (core_family, package_family) if f.samples]


class _CpuFiles:
    """Thermal throttle counts (read once per core and once per package) and node_cpu_online
    (where the kernel reports it: not at all when cpu0 has no online file, x86 without CPU
    hot-plug of the boot CPU, as node_exporter), each CPU's files held open (within the
    collector's share) and families whose values did not change handed out again.

    On sysfs, a file found missing (no thermal_throttle on most virtual machines, no online
    file for the boot CPU) is not tried again while the online CPUs and the cpu directories
    stay the same: the kernel adds and removes a CPU's thermal_throttle and topology files
    as it goes online or offline, and a CPU's online file with its directory. Elsewhere
    (fixture trees) every file is tried on every call."""

    __slots__ = ("_absent", "_absent_key", "_cpus", "_files", "_kernel", "_online",
                 "_throttles")

    def __init__(self, cpus: str, files: HeldFiles) -> None:
        self._cpus = cpus
        self._files = files
        self._kernel: bool | None = None  # whether cpus is on sysfs, once it could be opened
        self._absent: set[str] = set()
        self._absent_key: tuple[bytes | None, list[str]] | None = None
        self._throttles: tuple[object, list[Metric]] = ((), [])
        self._online: tuple[object, list[Metric]] = ((), [])

    def families(self) -> list[Metric]:
        dirs = _cpu_dirs(self._cpus)
        if self._kernel is None:
            try:
                with open_dir(self._cpus) as fd:
                    self._kernel = kernel_generated(fd)
            except OSError:
                pass
        if self._kernel:
            try:
                mask: bytes | None = self._files.read(f"{self._cpus}/online")
            except OSError:
                mask = None
            if self._absent_key != (mask, dirs):
                self._absent.clear()
                self._absent_key = (mask, dirs)
        else:
            self._absent.clear()
        return self._throttle(dirs) + self._online_family(dirs)

    def _read(self, path: str) -> str | None:
        """read_text(path), or None at once for a file known missing."""
        if path in self._absent:
            return None
        try:
            return self._files.read(path).decode(errors="replace").strip()
        except FileNotFoundError:
            if self._kernel:
                self._absent.add(path)
            return None
        except OSError:
            return None

    def _uint(self, path: str) -> int | None:
        text = self._read(path)
        value = None if text is None else parse_int(text)
        return value if value is not None and value >= 0 else None

    def _throttle(self, dirs: list[str]) -> list[Metric]:
        """The throttle families, the same again while the counts are."""
        key = _throttle_counts(dirs, self._uint)
        if key != self._throttles[0]:
            self._throttles = (key, _throttle_families(key))
        return self._throttles[1]

    def _online_family(self, dirs: list[str]) -> list[Metric]:
        """node_cpu_online, the same family again while the states are."""
        if not dirs:
            return []
        first = f"{dirs[0]}/online"
        text = self._read(first)
        if text is None and (first in self._absent or not os.path.exists(first)):
            return []
        values = [(os.path.basename(cpu)[3:],
                   1.0 if (text if cpu is dirs[0] else self._read(f"{cpu}/online")) == "1"
                   else 0.0)
                  for cpu in dirs]
        if values != self._online[0]:
            self._online = (values, [family(
                "node_cpu_online", "CPUs that are online and being scheduled.", "gauge",
                [sample("node_cpu_online", {"cpu": cpu}, value) for cpu, value in values])])
        return self._online[1]


CpuInfo = dict[str, str]  # /proc/cpuinfo key -> value, for one processor


def parse_cpuinfo(text: str) -> list[CpuInfo]:
    processors: list[CpuInfo] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor":
            processors.append({})
        if processors:
            processors[-1][key] = value.strip()
    return processors


INFO_FIELDS = (("package", "physical id"), ("core", "core id"), ("cpu", "processor"),
               ("vendor", "vendor_id"), ("family", "cpu family"), ("model", "model"),
               ("model_name", "model name"), ("microcode", "microcode"),
               ("stepping", "stepping"), ("cachesize", "cache size"))


def cpuinfo_families(processors: list[CpuInfo], flags: re.Pattern[str] | None,
                     bugs: re.Pattern[str] | None) -> list[Metric]:
    info = GaugeMetricFamily("node_cpu_info", "CPU information from /proc/cpuinfo.",
                             labels=[label for label, _ in INFO_FIELDS])
    for processor in processors:
        info.add_metric([processor.get(key, "") for _, key in INFO_FIELDS], 1.0)
    families: list[Metric] = [info]
    for name, key, label, pattern in (("flag_info", "flags", "flag", flags),
                                      ("bug_info", "bugs", "bug", bugs)):
        if pattern is None or not processors:
            continue
        family = GaugeMetricFamily(
            f"node_cpu_{name}",
            f"The `{key}` field of CPU information from /proc/cpuinfo taken from the first core.",
            labels=[label])
        for value in processors[0].get(key, "").split():
            if pattern.search(value):
                family.add_metric([value], 1.0)
        families.append(family)
    return [f for f in families if f.samples]


def cpu_families(cpus: dict[str, CpuTimes], guest_enabled: bool = True) -> list[Metric]:
    seconds = family("node_cpu_seconds", "Seconds the CPUs spent in each mode.", "counter")
    guest = family("node_cpu_guest_seconds",
                   "Seconds the CPUs spent in guests (VMs) for each mode.", "counter")
    for cpu, times in cpus.items():
        seconds.samples += (sample("node_cpu_seconds_total", {"cpu": cpu, "mode": mode},
                                   getattr(times, mode)) for mode in MODES)
        # Guest time is also part of user and nice (as in node_exporter); shown separately.
        guest.samples += (
            sample("node_cpu_guest_seconds_total", {"cpu": cpu, "mode": "user"}, times.guest),
            sample("node_cpu_guest_seconds_total", {"cpu": cpu, "mode": "nice"},
                   times.guest_nice))
    return [seconds, guest] if guest_enabled else [seconds]


def create(context: Context, settings: Any) -> CpuCollector:
    return CpuCollector(context.procfs, context.sysfs, settings.guest, settings.info,
                        settings.info_flags_include, settings.info_bugs_include)
