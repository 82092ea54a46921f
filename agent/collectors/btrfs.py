"""btrfs: node_btrfs_* per filesystem from /sys/fs/btrfs/<uuid> (prometheus/procfs's rules) and,
where a mount point can be opened, per-device sizes and error counters from the
BTRFS_IOC_DEV_INFO and BTRFS_IOC_GET_DEV_STATS ioctls, as node_exporter's latest release.

No /sys/fs/btrfs filesystem means no series. A filesystem whose sysfs directory cannot be read
is left out; where the ioctls fail (not root, not mounted here) the per-device series fall back
to the sizes sysfs gives, as in node_exporter.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, list_dir, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

SECTOR_SIZE = 512
BLOCK_GROUP_TYPES = ("data", "metadata", "system")
ERROR_TYPES = ("write", "read", "flush", "corruption", "generation")


def _iowr(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0x94 << 8) | nr


FS_INFO_SIZE, DEV_INFO_SIZE, DEV_STATS_SIZE = 1024, 4096, 1024
BTRFS_IOC_FS_INFO = _iowr(2, 31, FS_INFO_SIZE)
BTRFS_IOC_DEV_INFO = _iowr(3, 30, DEV_INFO_SIZE)
BTRFS_IOC_GET_DEV_STATS = _iowr(3, 52, DEV_STATS_SIZE)


@dataclass
class Layout:
    used: int
    total: int
    ratio: float


@dataclass
class Allocation:
    reserved: int = 0
    layouts: dict[str, Layout] = field(default_factory=dict)


@dataclass
class Filesystem:
    uuid: str
    label: str
    devices: dict[str, int]  # name -> size in bytes
    global_rsv_size: int
    allocation: dict[str, Allocation]
    commits: int = 0
    last_commit_ms: int = 0
    max_commit_ms: int = 0
    total_commit_ms: int = 0


@dataclass(frozen=True)
class DeviceStats:
    path: str
    uuid: str
    bytes_used: int
    total_bytes: int
    errors: tuple[int, ...]  # in ERROR_TYPES order


def _value(path: str) -> int:
    """procfs's readValue: a missing or non-numeric file reads as 0."""
    text = read_text(path)
    return int(text) if text is not None and text.isdigit() else 0


def _ratio(layout: str, devices: int) -> float:
    if layout in ("single", "raid0"):
        return 1.0
    if layout in ("dup", "raid1", "raid10"):
        return 2.0
    if layout == "raid5":
        return devices / (devices - 1) if devices != 1 else float("inf")
    if layout == "raid6":
        return devices / (devices - 2) if devices != 2 else float("inf")
    return 0.0


def read_filesystem(path: Path | str) -> Filesystem:
    """One /sys/fs/btrfs/<uuid> directory; OSError when its devices directory is unreadable."""
    path = str(path)
    devices = {name: SECTOR_SIZE * _value(f"{path}/devices/{name}/size")
               for name in sorted(os.listdir(f"{path}/devices"))}
    allocation = {}
    for kind in BLOCK_GROUP_TYPES:
        base = f"{path}/allocation/{kind}"
        layouts = {name: Layout(_value(f"{base}/{name}/used_bytes"),
                                _value(f"{base}/{name}/total_bytes"), _ratio(name, len(devices)))
                   for name in list_dir(base) if os.path.isdir(f"{base}/{name}")}
        allocation[kind] = Allocation(_value(f"{base}/bytes_reserved"), layouts)
    fs = Filesystem(uuid=read_text(f"{path}/metadata_uuid") or os.path.basename(path),
                    label=read_text(f"{path}/label") or "", devices=devices,
                    global_rsv_size=_value(f"{path}/allocation/global_rsv_size"),
                    allocation=allocation)
    for line in (read_text(f"{path}/commit_stats") or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit() and key in ("commits", "last_commit_ms", "max_commit_ms",
                                               "total_commit_ms"):
            setattr(fs, key, int(value))
    return fs


def read_filesystems(sysfs: Path) -> list[Filesystem]:
    base = sysfs / "fs" / "btrfs"
    filesystems = []
    for name in list_dir(base):
        if "-" not in name:  # "features" and other non-filesystem entries
            continue
        try:
            filesystems.append(read_filesystem(f"{base}/{name}"))
        except OSError:
            continue
    return filesystems


def btrfs_mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(source device, mount point) of the btrfs mounts in a mountinfo file."""
    mounts = []
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if sep and len(fields) >= 5 and len(rest) >= 2 and rest[0] == "btrfs":
            mounts.append((rest[1], fields[4].replace("\\040", " ")))
    return mounts


def ioctl_stats(mounts: list[tuple[str, str]], rootfs: Path) -> dict[str, list[DeviceStats]]:
    """Filesystem id (32 hex digits) -> its devices, read through the first mount point of
    each filesystem that can be opened and queried."""
    found: dict[str, list[DeviceStats]] = {}
    done: set[str] = set()
    for device, mount_point in mounts:
        if device in done:
            continue
        try:
            fd = os.open(rootfs / mount_point.lstrip("/"), os.O_RDONLY)
        except OSError:
            continue
        try:
            fsid, devices = _query(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        if fsid in found:
            continue
        done.add(device)
        found[fsid] = devices
    return found


def _query(fd: int) -> tuple[str, list[DeviceStats]]:
    info = bytearray(FS_INFO_SIZE)
    fcntl.ioctl(fd, BTRFS_IOC_FS_INFO, info)
    max_id, num_devices = struct.unpack_from("=QQ", info)
    fsid = bytes(info[16:32]).hex()
    devices: list[DeviceStats] = []
    for devid in range(max_id + 1):
        dev = bytearray(DEV_INFO_SIZE)
        struct.pack_into("=Q", dev, 0, devid)
        try:
            fcntl.ioctl(fd, BTRFS_IOC_DEV_INFO, dev)
        except OSError as exc:
            if exc.errno == errno.ENODEV:  # device ids have gaps
                continue
            raise
        stats = bytearray(DEV_STATS_SIZE)
        struct.pack_into("=QQQ", stats, 0, devid, len(ERROR_TYPES), 0)
        fcntl.ioctl(fd, BTRFS_IOC_GET_DEV_STATS, stats)
        bytes_used, total_bytes = struct.unpack_from("=QQ", dev, 24)
        path = bytes(dev[DEV_INFO_SIZE - 1024:]).split(b"\0", 1)[0].decode(errors="replace")
        devices.append(DeviceStats(path, bytes(dev[8:24]).hex(), bytes_used, total_bytes,
                                   struct.unpack_from("=5Q", stats, 24)))
        if len(devices) == num_devices:
            break
    return fsid, devices


def btrfs_families(filesystems: list[Filesystem],
                   ioctl: dict[str, list[DeviceStats]]) -> list[Metric]:
    def gauge(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"node_btrfs_{name}", help_text, labels=labels)

    def counter(name: str, help_text: str, labels: list[str]) -> CounterMetricFamily:
        return CounterMetricFamily(f"node_btrfs_{name}", help_text, labels=labels)

    layout_labels = ["uuid", "block_group_type", "mode"]
    info = gauge("info", "Filesystem information", ["uuid", "label"])
    rsv = gauge("global_rsv_size_bytes", "Size of global reserve.", ["uuid"])
    commits = counter("commits_total", "The total number of commits that have occurred.",
                      ["uuid"])
    last = gauge("last_commit_seconds", "Duration of the most recent commit, in seconds.",
                 ["uuid"])
    slowest = gauge("max_commit_seconds", "Duration of the slowest commit, in seconds.",
                    ["uuid"])
    total = counter("commit_seconds_total", "Sum of the duration of all commits, in seconds.",
                    ["uuid"])
    reserved = gauge("reserved_bytes", "Amount of space reserved for a data type",
                     ["uuid", "block_group_type"])
    used = gauge("used_bytes", "Amount of used space by a layout/data type", layout_labels)
    size = gauge("size_bytes", "Amount of space allocated for a layout/data type", layout_labels)
    ratio = gauge("allocation_ratio", "Data allocation ratio for a layout/data type",
                  layout_labels)
    device_labels = ["uuid", "device", "btrfs_dev_uuid"]
    device_size = gauge("device_size_bytes", "Size of a device that is part of the filesystem.",
                        device_labels)
    fallback_size = gauge("device_size_bytes",
                          "Size of a device that is part of the filesystem.", ["uuid", "device"])
    unused = gauge("device_unused_bytes",
                   "Unused bytes unused on a device that is part of the filesystem.",
                   device_labels)
    errors = counter("device_errors_total", "Errors reported for the device",
                     ["uuid", "type", "device", "btrfs_dev_uuid"])
    for fs in filesystems:
        uuid = fs.uuid
        info.add_metric([uuid, fs.label], 1.0)
        rsv.add_metric([uuid], fs.global_rsv_size)
        commits.add_metric([uuid], fs.commits)
        last.add_metric([uuid], fs.last_commit_ms / 1000)
        slowest.add_metric([uuid], fs.max_commit_ms / 1000)
        total.add_metric([uuid], fs.total_commit_ms / 1000)
        for kind, allocation in fs.allocation.items():
            reserved.add_metric([uuid, kind], allocation.reserved)
            for mode, layout in allocation.layouts.items():
                used.add_metric([uuid, kind, mode], layout.used)
                size.add_metric([uuid, kind, mode], layout.total)
                ratio.add_metric([uuid, kind, mode], layout.ratio)
        devices = ioctl.get(uuid.replace("-", ""))
        if devices is None:
            for name, bytes_ in fs.devices.items():
                fallback_size.add_metric([uuid, name], bytes_)
            continue
        for dev in devices:
            labels = [uuid, dev.path.rsplit("/", 1)[-1], dev.uuid]
            device_size.add_metric(labels, dev.total_bytes)
            unused.add_metric(labels, dev.total_bytes - dev.bytes_used)
            for kind, count in zip(ERROR_TYPES, dev.errors, strict=True):
                errors.add_metric([uuid, kind, *labels[1:]], count)
    families: list[Metric] = [info, rsv, commits, last, slowest, total, reserved, used, size,
                              ratio, fallback_size, device_size, unused, errors]
    return [family for family in families if family.samples]


class BtrfsCollector:
    def __init__(self, procfs: Path, sysfs: Path, rootfs: Path) -> None:
        self._procfs, self._sysfs, self._rootfs = procfs, sysfs, rootfs
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        filesystems = read_filesystems(self._sysfs)
        if not filesystems:
            return []
        mountinfo = read_text(self._procfs / "1" / "mountinfo")
        if mountinfo is None:
            mountinfo = read_text(self._procfs / "self" / "mountinfo") or ""
        ioctl = ioctl_stats(btrfs_mounts(mountinfo), self._rootfs)
        # Every value read (the filesystems' attributes, the devices' ioctl answers), compared
        # by value: the families again only when one differs.
        raw = (tuple(filesystems), tuple((fsid, tuple(devices)) for fsid, devices in ioctl.items()))
        return self._unchanged.get(raw, lambda: btrfs_families(filesystems, ioctl))


def create(context: Context, settings: Any) -> BtrfsCollector:
    return BtrfsCollector(context.procfs, context.sysfs, context.rootfs)
