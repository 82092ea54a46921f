"""node_exporter's stat, time, uname, os, filefd and pressure collectors: one reader, each
collector a part of it (SystemCollector with every part is what `collect --once` of all six
gives, and what the SSH node module reuses).

/proc/stat is essential to the stat part: a run without it fails. Every other source is
optional and only leaves its own metrics out when it is missing or unreadable.
"""

from __future__ import annotations

import calendar
import datetime
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    Singles,
    counter,
    family,
    gauge,
    list_dir,
    read_file_bytes,
    sample,
)
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

log = logging.getLogger("hostagent.system")
PARTS = frozenset({"stat", "time", "uname", "os", "filefd", "pressure"})
T = TypeVar("T")

# /proc/stat key -> (metric name, help, is a counter), as node_exporter's stat collector;
# in the order of the metric names.
STAT = {
    "btime": ("node_boot_time_seconds", "Node boot time, in unixtime.", False),
    "ctxt": ("node_context_switches", "Total number of context switches.", True),
    "processes": ("node_forks", "Total number of forks.", True),
    "intr": ("node_intr", "Total number of interrupts serviced.", True),
    "procs_blocked": ("node_procs_blocked",
                      "Number of processes blocked waiting for I/O to complete.", False),
    "procs_running": ("node_procs_running", "Number of processes in runnable state.", False),
}
CLOCKSOURCE_DIR = "devices/system/clocksource"
OS_RELEASE_LABELS = ("build_id", "id", "id_like", "image_id", "image_version", "name",
                     "pretty_name", "variant", "variant_id", "version", "version_codename",
                     "version_id")
# (resource, line, metric name, help): node_exporter reads no "full" line for cpu, and irq
# (Linux 6.1+) has only a "full" line.
PRESSURE = (
    ("cpu", "some", "node_pressure_cpu_waiting_seconds",
     "Total time in seconds that processes have waited for CPU time"),
    ("io", "some", "node_pressure_io_waiting_seconds",
     "Total time in seconds that processes have waited due to IO congestion"),
    ("io", "full", "node_pressure_io_stalled_seconds",
     "Total time in seconds no process could make progress due to IO congestion"),
    ("memory", "some", "node_pressure_memory_waiting_seconds",
     "Total time in seconds that processes have waited for memory"),
    ("memory", "full", "node_pressure_memory_stalled_seconds",
     "Total time in seconds no process could make progress due to memory congestion"),
    ("irq", "full", "node_pressure_irq_stalled_seconds",
     "Total time in seconds no process could make progress due to IRQ congestion"),
)
_VERSION = re.compile(r"[0-9]+\.?[0-9]*")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The per-vector columns of /proc/stat's softirq line, after the total.
SOFTIRQ_VECTORS = ("hi", "timer", "net_tx", "net_rx", "block", "block_iopoll", "tasklet",
                   "sched", "hrtimer", "rcu")


def parse_stat(text: str) -> dict[str, float]:
    """The system-wide lines of /proc/stat; for 'intr' only the first value (the total)."""
    out = {}
    for line in text.splitlines():
        # Only the first value is needed: the intr line has hundreds.
        key, *values = line.split(None, 2) or [""]
        if key in STAT and values:
            out[key] = float(values[0])
    return out


def parse_softirq(text: str) -> dict[str, float]:
    """/proc/stat's 'softirq TOTAL HI TIMER ...' line -> {vector: calls}."""
    for line in text.splitlines():
        key, *values = line.split() or [""]
        if key == "softirq":
            return {vector: float(value)
                    for vector, value in zip(SOFTIRQ_VECTORS, values[1:], strict=False)}
    return {}


@dataclass(frozen=True)
class Clocksource:
    available: tuple[str, ...]
    current: str


def parse_clocksource(available: str, current: str) -> Clocksource:
    return Clocksource(tuple(available.split()), current.strip())


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values quoted and escaped as in a shell."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            out[key] = " ".join(shlex.split(value))
        except ValueError:
            log.debug("skipping malformed os-release line: %s", line)
    return out


def os_version(version_id: str) -> float:
    """node_exporter's major.minor number from VERSION_ID ('22.04.3' -> 22.04); 0 if none."""
    match = _VERSION.match(version_id)
    return float(match.group()) if match else 0.0


def parse_file_nr(text: str) -> tuple[float, float]:
    """/proc/sys/fs/file-nr 'allocated unused maximum' -> (allocated, maximum)."""
    allocated, _, maximum = text.split()
    return float(allocated), float(maximum)


def parse_pressure(text: str) -> dict[str, float]:
    """'some avg10=0.00 avg60=0.00 avg300=0.00 total=1234' -> {'some': 0.001234}, in seconds."""
    out = {}
    for line in filter(str.strip, text.splitlines()):
        kind, *pairs = line.split()
        fields = dict(pair.split("=", 1) for pair in pairs)
        out[kind] = int(fields["total"]) / 1000 / 1000  # microseconds, divided as node_exporter
    return out


@dataclass(frozen=True)
class SystemReadings:
    stat: dict[str, float]
    now: float
    zone: tuple[str, int]  # abbreviation, offset east of UTC in seconds
    clocksources: list[Clocksource]
    uname: dict[str, str]
    os_release: dict[str, str] | None
    filefd: tuple[float, float] | None
    pressure: dict[str, dict[str, float]]
    softirq: dict[str, float] | None = None  # with the stat collector's softirq option


def _optional(path: str, parse: Callable[[str], T],
              read: Callable[[str], bytes] = read_file_bytes) -> T | None:
    try:
        return parse(read(path).decode())
    except (OSError, ValueError, KeyError) as exc:
        log.debug("optional source unavailable: %s: %s", path, exc)
        return None


class SystemCollector:
    def __init__(self, procfs: Path, sysfs: Path, rootfs: Path,
                 parts: frozenset[str] = PARTS, softirq: bool = False) -> None:
        self._parts = parts
        self._softirq = softirq
        self._files = HeldFiles()
        # Paths joined once, not every cycle.
        self._stat = str(procfs / "stat")
        self._pressure = {resource: str(procfs / "pressure" / resource)
                          for resource in ("cpu", "io", "memory", "irq")}
        self._file_nr = str(procfs / "sys" / "fs" / "file-nr")
        self._domainname = str(procfs / "sys" / "kernel" / "domainname")
        self._clocksource_dir = str(sysfs / CLOCKSOURCE_DIR)
        self._os_release_paths = [(candidate, rootfs / candidate)
                                  for candidate in ("etc/os-release", "usr/lib/os-release")]
        self._os_release_cache: tuple[tuple[object, ...], dict[str, str]] | None = None
        # The last readings and their families: uname and os read the same tick after tick,
        # and the same families handed out again are skipped at once by the renderer.
        self._last: tuple[SystemReadings, list[Metric]] | None = None
        # Otherwise a single-valued family whose value did not change is the same object.
        self._singles = Singles()

    def collect(self) -> list[Metric]:
        readings = self.read()
        if self._last is not None and self._last[0] == readings:
            return self._last[1]
        families = system_families(readings, self._parts, self._singles)
        self._singles.done()
        self._last = (readings, families)
        return families

    def read(self) -> SystemReadings:
        """Reads the sources of this collector's parts only."""
        parts = self._parts
        read = self._files.read
        stat_text = read(self._stat).decode() if "stat" in parts else ""
        stat = parse_stat(stat_text)
        # The clock and zone only for the time part (the others would never read the same).
        now = time.time() if "time" in parts else 0.0
        local = time.localtime(now) if "time" in parts else None
        pressure = {resource: _optional(path, parse_pressure, read)
                    for resource, path in self._pressure.items()} if "pressure" in parts else {}
        return SystemReadings(
            stat=stat,
            now=now,
            zone=("", 0) if local is None else (local.tm_zone, local.tm_gmtoff),
            clocksources=self._clocksources() if "time" in parts else [],
            uname=self._uname() if "uname" in parts else {},
            os_release=self._os_release() if "os" in parts else None,
            filefd=_optional(self._file_nr, parse_file_nr, read) if "filefd" in parts else None,
            pressure={resource: lines for resource, lines in pressure.items() if lines},
            softirq=parse_softirq(stat_text) if self._softirq else None,
        )

    def _clocksources(self) -> list[Clocksource]:
        found = []
        for name in list_dir(self._clocksource_dir):  # as glob("clocksource*"), cheaper
            if not name.startswith("clocksource"):
                continue
            device = f"{self._clocksource_dir}/{name}"
            try:
                found.append(parse_clocksource(
                    self._files.read(f"{device}/available_clocksource").decode(),
                    self._files.read(f"{device}/current_clocksource").decode()))
            except OSError as exc:
                log.debug("clocksource unreadable: %s: %s", device, exc)
        return found

    def _uname(self) -> dict[str, str]:
        uts = os.uname()
        domain = _optional(self._domainname, str.strip, self._files.read)
        return {"domainname": domain or "(none)", "machine": uts.machine,
                "nodename": uts.nodename, "release": uts.release, "sysname": uts.sysname,
                "version": uts.version}

    def _os_release(self) -> dict[str, str] | None:
        for candidate, path in self._os_release_paths:
            try:
                # Parsed again only when the file changes: it almost never does.
                stat = path.stat()
                version = (candidate, stat.st_mtime_ns, stat.st_size, stat.st_ino)
                if self._os_release_cache is None or self._os_release_cache[0] != version:
                    self._os_release_cache = (version, parse_os_release(path.read_text()))
                return self._os_release_cache[1]
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.debug("os-release unreadable: %s", exc)
                return None
        return None


def stat_families(stat: dict[str, float], singles: Singles | None = None) -> list[Metric]:
    families: list[Metric] = []
    for key, (name, help_text, is_counter) in STAT.items():
        if key in stat:
            build = counter if is_counter else gauge
            families.append(build(name, help_text, stat[key], singles))
    return families


def time_seconds_family(now: float) -> Metric:
    return gauge("node_time_seconds", "System time in seconds since epoch (1970).", now)


def system_families(r: SystemReadings, parts: frozenset[str] = PARTS,
                    singles: Singles | None = None) -> list[Metric]:
    families = stat_families(r.stat, singles)
    if r.softirq is not None:
        families.append(family("node_softirqs", "Number of softirq calls.", "counter", [
            sample("node_softirqs_total", {"vector": vector}, calls)
            for vector, calls in sorted(r.softirq.items())]))
    if "time" in parts:
        families += _time_families(r)
    if "uname" in parts:
        families.append(_info("node_uname_info",
                              "Labeled system information as provided by the uname system call.",
                              r.uname))
    if r.os_release is not None:
        families += _os_families(r.os_release)
    if r.filefd is not None:
        for field, value in zip(("allocated", "maximum"), r.filefd, strict=True):
            families.append(gauge(f"node_filefd_{field}", f"File descriptor statistics: {field}.",
                                  value, singles))
    for resource, line, name, help_text in PRESSURE:
        seconds = r.pressure.get(resource, {}).get(line)
        if seconds is not None:
            families.append(counter(name, help_text, seconds, singles))
    return families


def _time_families(r: SystemReadings) -> list[Metric]:
    source = "'/sys/devices/system/clocksource'"
    available = family("node_time_clocksource_available_info",
                       f"Available clocksources read from {source}.", "gauge")
    current = family("node_time_clocksource_current_info",
                     f"Current clocksource read from {source}.", "gauge")
    for index, clocksource in enumerate(r.clocksources):
        for name in clocksource.available:
            available.samples.append(sample("node_time_clocksource_available_info",
                                            {"clocksource": name, "device": str(index)}, 1))
        current.samples.append(sample("node_time_clocksource_current_info",
                                      {"clocksource": clocksource.current,
                                       "device": str(index)}, 1))
    zone = family("node_time_zone_offset_seconds", "System time zone offset in seconds.",
                  "gauge", [sample("node_time_zone_offset_seconds", {"time_zone": r.zone[0]},
                                   r.zone[1])])
    families: list[Metric] = [available, current] if r.clocksources else []
    return [*families, time_seconds_family(r.now), zone]


def _os_families(release: dict[str, str]) -> list[Metric]:
    families = [_info(
        "node_os_info",
        "A metric with a constant '1' value labeled by " + ", ".join(OS_RELEASE_LABELS) + ".",
        {label: release.get(label.upper(), "") for label in OS_RELEASE_LABELS})]
    version = os_version(release.get("VERSION_ID", ""))
    if version > 0:
        labels = {label: release.get(label.upper(), "") for label in ("id", "id_like", "name")}
        families.append(family("node_os_version",
                               "Metric containing the major.minor part of the OS version.",
                               "gauge", [sample("node_os_version", labels, version)]))
    support_end = release.get("SUPPORT_END", "")
    if support_end:
        families.append(gauge("node_os_support_end_timestamp_seconds",
                              "Metric containing the end-of-life date timestamp of the OS.",
                              support_end_timestamp(support_end)))
    return families


def support_end_timestamp(text: str) -> float:
    """SUPPORT_END (YYYY-MM-DD) -> midnight UTC in Unix seconds; anything else fails the run,
    as node_exporter's time.Parse(time.DateOnly)."""
    if not _DATE_ONLY.fullmatch(text):
        raise ValueError(f"os-release SUPPORT_END is not a YYYY-MM-DD date: {text!r}")
    day = datetime.date.fromisoformat(text)
    return float(calendar.timegm(day.timetuple()))


def _info(name: str, help_text: str, labels: dict[str, str]) -> Metric:
    return family(name, help_text, "gauge", [sample(name, labels, 1)])


def _part(name: str) -> Any:
    def create(context: Context, settings: Any) -> SystemCollector:
        return SystemCollector(context.procfs, context.sysfs, context.rootfs, frozenset({name}))
    return create


def create_stat(context: Context, settings: Any) -> SystemCollector:
    return SystemCollector(context.procfs, context.sysfs, context.rootfs, frozenset({"stat"}),
                           softirq=settings.softirq)


create_time = _part("time")
create_uname = _part("uname")
create_os = _part("os")
create_filefd = _part("filefd")
create_pressure = _part("pressure")
