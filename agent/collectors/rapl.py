"""rapl: node_rapl_<zone>_joules_total from /sys/class/powercap (Intel/AMD RAPL energy
counters), as node_exporter's latest release; with --collector.rapl.enable-zone-label one
node_rapl_joules_total family with a rapl_zone label instead.

Zones are the powercap directories with a `name` file; "package-1" is zone "package" index 1,
names without an index are numbered in order of appearance. Kernels from 5.10 let only root
read energy_uj: unreadable counters are no data, not an error.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, Unchanged, parse_int, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def index_and_name(counts: dict[str, int], name: str) -> tuple[int, str]:
    parts = name.split("-")
    if len(parts) == 2 and parse_int(parts[1].lstrip("+")) is not None:
        return int(parts[1]), parts[0]
    return counts.get(name, 0), name


def read_zones(powercap: str) -> list[tuple[str, int, str]]:
    """(name, index, path) of every RAPL zone, in directory order."""
    try:
        entries = sorted(os.listdir(powercap))
    except FileNotFoundError:
        return []
    counts: dict[str, int] = {}
    zones = []
    for entry in entries:
        path = os.path.normpath(os.path.join(powercap, entry))
        raw = read_text(os.path.join(path, "name"))
        if raw is None or read_text(os.path.join(path, "max_energy_range_uj")) is None:
            continue
        index, name = index_and_name(counts, raw)
        counts[name] = index + 1
        zones.append((name, index, path))
    return zones


class RaplCollector:
    def __init__(self, sysfs: Path, zone_label: bool) -> None:
        self._powercap = os.path.join(str(sysfs), "class", "powercap")
        self._zone_label = zone_label
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def _read(self) -> tuple[tuple[str, int, str, bytes | int], ...]:
        """(name, index, path, energy_uj's bytes or the errno reading it failed with)."""
        zones = []
        for name, index, path in read_zones(self._powercap):
            energy: bytes | int
            try:
                with open(os.path.join(path, "energy_uj"), "rb") as handle:
                    energy = handle.read()
            except OSError as exc:
                energy = exc.errno or 0
            zones.append((name, index, path, energy))
        return tuple(zones)

    def collect(self) -> list[Metric]:
        raw = self._read()
        return self._unchanged.get(raw, lambda: self._build(raw))

    def _build(self, zones: tuple[tuple[str, int, str, bytes | int], ...]) -> list[Metric]:
        out = Families()
        for name, index, path, energy in zones:
            if energy in (errno.EACCES, errno.EPERM):  # root-only since Linux 5.10: no data
                return []
            if isinstance(energy, int):
                continue
            microjoules = parse_int(energy.decode(errors="replace").strip())
            if microjoules is None or microjoules < 0:
                continue
            joules = microjoules / 1000000.0
            if self._zone_label:
                out.add("node_rapl_joules_total", "Current RAPL value in joules",
                        ("index", "path", "rapl_zone"), [str(index), path, name], joules,
                        counter=True)
            else:
                out.add(f"node_rapl_{INVALID.sub('_', name)}_joules_total",
                        f"Current RAPL {name} value in joules", ("index", "path"),
                        [str(index), path], joules, counter=True)
        return out.result()


def create(context: Context, settings: Any) -> RaplCollector:
    return RaplCollector(context.sysfs, settings.enable_zone_label)
