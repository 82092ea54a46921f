"""The node module: a remote host's node_* series from ONE command per round, turned into
metric families by the local collectors' own parsers, so the series match theirs.

The command prints each source after a marker line carrying a per-round random token (a mount
point named like a marker cannot forge a section): /proc/{stat,meminfo,loadavg,uptime,net/dev,
diskstats,self/mounts}, `df -P` and `df -P -i` (the mounts give df's rows their fstype and
read-only flag, as node_exporter reports them). It runs under `sh` with LC_ALL=C whatever the
login shell and locale.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from agent.collectors.common import DeviceFilter
from agent.collectors.cpu import CpuTimes, cpu_families, keep_monotonic, parse_stat_cpus
from agent.collectors.diskstats import diskstats_families, parse_diskstats
from agent.collectors.filesystem import Mount, filesystem_families, parse_mounts
from agent.collectors.load import load_families, parse_loadavg
from agent.collectors.memory import memory_families, parse_meminfo
from agent.collectors.netdev import netdev_families, parse_net_dev
from agent.collectors.system import parse_stat, stat_families, time_seconds_family

PROC_FILES = ("stat", "meminfo", "loadavg", "uptime", "net/dev", "diskstats", "self/mounts")
ESSENTIAL = ("stat", "meminfo", "loadavg")
USER_HZ = 100.0  # what /proc/stat counts in on every Linux architecture; asked for anyway


def new_marker() -> str:
    return f"@@hostagent-{secrets.token_hex(8)}@@"


def command(marker: str) -> str:
    steps = [f'echo "{marker} clk_tck"; getconf CLK_TCK']
    steps += [f'echo "{marker} {name}"; cat /proc/{name}' for name in PROC_FILES]
    steps += [f'echo "{marker} df"; df -P', f'echo "{marker} df -i"; df -P -i']
    script = "; ".join(steps)
    return f"env LC_ALL=C sh -c '{script}'"


def split_sections(output: str, marker: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines(keepends=True):
        if line.startswith(marker + " "):
            current = sections.setdefault(line[len(marker) + 1:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "".join(lines) for name, lines in sections.items()}


def parse_df(text: str) -> dict[str, tuple[int, int, int]]:
    """`df -P` (or `df -P -i`) -> {mount point: (total, used, available)}, sizes in bytes
    (inodes for -i). The header names the block size; rows without numbers are skipped."""
    lines = text.splitlines()
    if not lines:
        return {}
    header = lines[0].split()
    block = re.fullmatch(r"(\d+)-blocks", header[1]) if len(header) > 1 else None
    unit = int(block.group(1)) if block else 1
    rows = {}
    for line in lines[1:]:
        parts = line.split(None, 5)
        if len(parts) == 6 and all(p.isdigit() for p in parts[1:4]):
            total, used, avail = (int(p) * unit for p in parts[1:4])
            rows[parts[5]] = (total, used, avail)
    return rows


@dataclass(frozen=True)
class NodeFilters:
    """The local collectors' default device, mount point and filesystem type filters."""

    device_include: str | None
    device_exclude: str | None
    mount_points_exclude: str
    fs_types_exclude: str

    @classmethod
    def defaults(cls) -> NodeFilters:
        # The settings models (pydantic, every collector's) are loaded here, not with the
        # module: the SSH worker process gets these values from the agent instead.
        from agent.collectors.catalog import DiskstatsSettings, FilesystemSettings

        disks, fs = DiskstatsSettings(), FilesystemSettings()
        return cls(disks.device_include, disks.device_exclude, fs.mount_points_exclude,
                   fs.fs_types_exclude)


class RemoteNode:
    """Turns one target's command output into node_* families. Keeps the CPU counters of the
    previous round, so they never go backwards (as the local cpu collector does)."""

    def __init__(self, filters: NodeFilters | None = None) -> None:
        self._cpus: dict[str, CpuTimes] = {}
        filters = filters or NodeFilters.defaults()
        self._disk_filter = DeviceFilter(filters.device_include, filters.device_exclude)
        self._mount_points_exclude = re.compile(filters.mount_points_exclude)
        self._fs_types_exclude = re.compile(filters.fs_types_exclude)

    def families(self, sections: Mapping[str, str]) -> list[Metric]:
        """Raises ValueError when an essential source is missing or a source is malformed."""
        missing = [name for name in ESSENTIAL if not sections.get(name, "").strip()]
        if missing:
            raise ValueError(f"no output for /proc/{', /proc/'.join(missing)}")
        clk_tck = sections.get("clk_tck", "").strip()
        user_hz = float(clk_tck) if clk_tck.isdigit() else USER_HZ
        cpus = parse_stat_cpus(sections["stat"], user_hz)
        self._cpus = {cpu: keep_monotonic(self._cpus.get(cpu), t) for cpu, t in cpus.items()}
        stat = parse_stat(sections["stat"])
        families = [*cpu_families(self._cpus), *stat_families(stat),
                    *memory_families(parse_meminfo(sections["meminfo"])),
                    *load_families(parse_loadavg(sections["loadavg"]))]
        uptime = sections.get("uptime", "").split()
        if uptime and "btime" in stat:
            # The remote clock, to within a second (btime is whole seconds).
            families.append(time_seconds_family(stat["btime"] + float(uptime[0])))
        if sections.get("net/dev", "").strip():
            families += netdev_families(parse_net_dev(sections["net/dev"]))
        if sections.get("diskstats", "").strip():
            disks = [d for d in parse_diskstats(sections["diskstats"])
                     if not self._disk_filter.ignored(d.device)]
            families += diskstats_families(disks, {})
        families += self._filesystems(sections)
        return families

    def _filesystems(self, sections: Mapping[str, str]) -> list[Metric]:
        sizes = parse_df(sections.get("df", ""))
        inodes = parse_df(sections.get("df -i", ""))
        mounts: dict[str, Mount] = {}
        for mount in parse_mounts(sections.get("self/mounts", "")):
            if not (self._mount_points_exclude.search(mount.mountpoint)
                    or self._fs_types_exclude.search(mount.fstype)):
                mounts[mount.mountpoint] = mount  # the last one mounted is the one df sees
        stats: list[tuple[Mount, os.statvfs_result | None]] = []
        for point, mount in mounts.items():
            if point not in sizes:
                continue
            total, used, avail = sizes[point]
            files, _, files_free = inodes.get(point, (0, 0, 0))
            stats.append((mount, os.statvfs_result(
                (1, 1, total, total - used, avail, files, files_free, files_free, 0, 255))))
        families = filesystem_families(stats)
        without_inodes = {tuple(m.labels) for m, _ in stats if m.mountpoint not in inodes}
        if without_inodes:
            for family in families:
                if family.name in ("node_filesystem_files", "node_filesystem_files_free"):
                    family.samples = [s for s in family.samples if tuple(
                        s.labels[k] for k in ("device", "mountpoint", "fstype"))
                        not in without_inodes]
        return [f for f in families if f.samples]

