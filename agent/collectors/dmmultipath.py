"""dmmultipath: node_dmmultipath_* for each DM-multipath map (a /sys/block/dm-* whose dm/uuid
starts with "mpath-") and its paths (slaves/, each with its device/state), as node_exporter's
latest release with prometheus/procfs's blockdevice.DMMultipathDevices.

No /sys/block, or an attribute missing or unreadable for lack of permission, is no data (as
node_exporter, which then reports nothing for the collector); a device-mapper device that is
not a multipath map is skipped; any other read or parse error fails the collector.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import (
    Unchanged,
    go_order,
    parse_int,
    read_attribute_bytes,
    read_file_bytes,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

SECTOR_SIZE = 512
NO_DATA_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class MultipathPath:
    device: str
    state: str


@dataclass(frozen=True)
class MultipathDevice:
    name: str
    sysfs_name: str
    uuid: str
    suspended: bool
    size_bytes: int
    paths: tuple[MultipathPath, ...]


def _sys_read(path: str) -> str:
    """procfs's SysReadFile: one read, surrounding whitespace trimmed."""
    return read_attribute_bytes(path).decode(errors="replace").strip()


def _read_uint(path: str) -> int:
    """procfs's ReadUintFromFile."""
    text = read_file_bytes(path).decode(errors="replace").strip()
    value = parse_int(text)
    if value is None or value < 0 or text.startswith("+"):
        raise ValueError(f"{path}: not an unsigned integer: {text!r}")
    return value


def _no_data(exc: OSError) -> bool:
    """procfs's error wraps os.ErrNotExist or os.ErrPermission: node_exporter's ErrNoData."""
    return exc.errno in NO_DATA_ERRNOS


def _list(path: str) -> list[str]:
    return sorted(os.listdir(path))


def read_devices(sysfs: Path) -> list[MultipathDevice]:
    # Paths as strings: pathlib's joins cost more than the reads.
    block = f"{sysfs}/block"
    devices = []
    for entry in _list(block):
        if not entry.startswith("dm-"):
            continue
        dm = f"{block}/{entry}/dm"
        try:
            uuid = _sys_read(f"{dm}/uuid")
        except FileNotFoundError:
            continue  # not a device-mapper device
        if not uuid.startswith("mpath-"):
            continue
        name = _sys_read(f"{dm}/name")
        suspended = _read_uint(f"{dm}/suspended") == 1
        size = _read_uint(f"{block}/{entry}/size") * SECTOR_SIZE
        paths = []
        try:
            slaves = _list(f"{block}/{entry}/slaves")
        except FileNotFoundError:
            slaves = []
        for slave in slaves:
            paths.append(MultipathPath(slave, _sys_read(f"{block}/{slave}/device/state")))
        devices.append(MultipathDevice(name, entry, uuid, suspended, size, tuple(paths)))
    return devices


def is_path_active(state: str) -> bool:
    """SCSI "running" and NVMe "live" are the healthy, usable path states."""
    return state in ("running", "live")


def dmmultipath_families(devices: list[MultipathDevice]) -> list[Metric]:
    labels = ["device", "sysfs_name"]
    info = GaugeMetricFamily("node_dmmultipath_device_info",
                             "Non-numeric information about a DM-multipath device.",
                             labels=["device", "sysfs_name", "uuid"])
    active = GaugeMetricFamily(
        "node_dmmultipath_device_active",
        "Whether the multipath device-mapper device is active (1) or suspended (0).",
        labels=labels)
    size = GaugeMetricFamily(
        "node_dmmultipath_device_size_bytes",
        "Size of the multipath device in bytes, read from /sys/block/<dm>/size.", labels=labels)
    paths = GaugeMetricFamily("node_dmmultipath_device_paths",
                              "Number of paths for a multipath device.", labels=labels)
    paths_active = GaugeMetricFamily(
        "node_dmmultipath_device_paths_active",
        "Number of paths in active state (SCSI running or NVMe live) for a multipath device.",
        labels=labels)
    paths_failed = GaugeMetricFamily(
        "node_dmmultipath_device_paths_failed",
        "Number of paths not in active state for a multipath device.", labels=labels)
    path_state = GaugeMetricFamily(
        "node_dmmultipath_path_state",
        "Reports the underlying device state for a multipath path, as read from "
        "/sys/block/<dev>/device/state.", labels=["device", "path", "state"])
    for dev in devices:
        ids = [dev.name, dev.sysfs_name]
        info.add_metric([dev.name, dev.sysfs_name, dev.uuid], 1.0)
        active.add_metric(ids, 0.0 if dev.suspended else 1.0)
        size.add_metric(ids, float(dev.size_bytes))
        healthy = sum(1 for p in dev.paths if is_path_active(p.state))
        for p in dev.paths:
            path_state.add_metric([dev.name, p.device, p.state], 1.0)
        paths.add_metric(ids, float(len(dev.paths)))
        paths_active.add_metric(ids, float(healthy))
        paths_failed.add_metric(ids, float(len(dev.paths) - healthy))
    return go_order([info, active, size, paths, paths_active, paths_failed, path_state])


class DmMultipathCollector:
    def __init__(self, sysfs: Path) -> None:
        self._sysfs = sysfs
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        try:
            devices = tuple(read_devices(self._sysfs))
        except OSError as exc:
            if _no_data(exc):
                return []
            raise
        # The attributes as read (each one value, trimmed): the families again only when
        # one of them differs.
        return self._unchanged.get(devices, lambda: dmmultipath_families(list(devices)))


def create(context: Context, settings: Any) -> DmMultipathCollector:
    return DmMultipathCollector(context.sysfs)
