"""diskstats: node_disk_* from /proc/diskstats, the udev database and /sys/block, as
node_exporter's latest release (procfs's blockdevice parsing)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    DeviceFilter,
    Unchanged,
    family,
    list_dir,
    read_file_bytes,
    read_text,
    sample,
)
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# /proc/diskstats counts sectors of 512 bytes whatever the device's sector size, and times in ms.
SECTOR_BYTES = 512.0
# Multiplying (not dividing) gives the same floats as node_exporter, e.g. 12.370000000000001.
SECONDS_PER_MS = 1.0 / 1000.0

# The stat fields in kernel order: (metric name, help, scale). Older kernels print fewer
# fields (11 before 4.18, 15 before 5.5); only the fields present are reported.
STATS: tuple[tuple[str, str, float], ...] = (
    ("reads_completed", "The total number of reads completed successfully.", 1.0),
    ("reads_merged", "The total number of reads merged.", 1.0),
    ("read_bytes", "The total number of bytes read successfully.", SECTOR_BYTES),
    ("read_time_seconds", "The total number of seconds spent by all reads.", SECONDS_PER_MS),
    ("writes_completed", "The total number of writes completed successfully.", 1.0),
    ("writes_merged", "The number of writes merged.", 1.0),
    ("written_bytes", "The total number of bytes written successfully.", SECTOR_BYTES),
    ("write_time_seconds", "This is the total number of seconds spent by all writes.",
     SECONDS_PER_MS),
    ("io_now", "The number of I/Os currently in progress.", 1.0),
    ("io_time_seconds", "Total seconds spent doing I/Os.", SECONDS_PER_MS),
    ("io_time_weighted_seconds", "The weighted # of seconds spent doing I/Os.", SECONDS_PER_MS),
    ("discards_completed", "The total number of discards completed successfully.", 1.0),
    ("discards_merged", "The total number of discards merged.", 1.0),
    ("discarded_sectors", "The total number of sectors discarded successfully.", 1.0),
    ("discard_time_seconds", "This is the total number of seconds spent by all discards.",
     SECONDS_PER_MS),
    ("flush_requests", "The total number of flush requests completed successfully", 1.0),
    ("flush_requests_time_seconds",
     "This is the total number of seconds spent by all flush requests.", SECONDS_PER_MS),
)
GAUGES = {"io_now"}

# udev property -> gauge name suffix, reported for ATA disks when the property parses as a number.
ATA_PROPERTIES = {
    "ID_ATA_WRITE_CACHE": ("ata_write_cache", "ATA disk has a write cache."),
    "ID_ATA_WRITE_CACHE_ENABLED": ("ata_write_cache_enabled",
                                   "ATA disk has its write cache enabled."),
    "ID_ATA_ROTATION_RATE_RPM": ("ata_rotation_rate_rpm",
                                 "ATA disk rotation rate in RPMs (0 for SSDs)."),
}


# /sys/block/<dev>/queue files procfs's SysBlockDeviceQueueStats reads: unsigned, signed, any
# text. If one is missing or malformed it returns nothing, so node_exporter's rotational label
# is "0" unless every one of them reads.
QUEUE_UINT = ("add_random", "dax", "discard_granularity", "discard_max_hw_bytes",
              "discard_max_bytes", "hw_sector_size", "io_poll", "io_timeout", "iostats",
              "logical_block_size", "max_hw_sectors_kb", "max_integrity_segments",
              "max_sectors_kb", "max_segments", "max_segment_size", "minimum_io_size", "nomerges",
              "nr_requests", "optimal_io_size", "physical_block_size", "read_ahead_kb",
              "rq_affinity", "write_same_max_bytes", "nr_zones", "chunk_sectors", "fua",
              "max_discard_segments", "write_zeroes_max_bytes")
QUEUE_INT = ("io_poll_delay", "wbt_lat_usec")
QUEUE_TEXT = ("write_cache", "zoned", "scheduler")


@dataclass(frozen=True)
class Disk:
    major: int
    minor: int
    device: str
    stats: tuple[int, ...]  # the raw fields after the name, in kernel order


def parse_diskstats(text: str) -> list[Disk]:
    """Lines of 'MAJOR MINOR NAME FIELD...' -> Disk records; lines without any field are skipped."""
    disks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        major, minor, device, *stats = parts
        disks.append(Disk(int(major), int(minor), device, tuple(int(v) for v in stats)))
    return disks


def parse_udev(text: str) -> dict[str, str]:
    """The device properties ('E:KEY=VALUE' lines) of a udev database file."""
    properties = {}
    for line in text.splitlines():
        key, sep, value = line.removeprefix("E:").partition("=")
        if line.startswith("E:") and sep:
            properties[key] = value
    return properties


def serial(props: dict[str, str]) -> str:
    """The serial printed on the label, else the short serial, else ID_SERIAL (virtio)."""
    return (props.get("SCSI_IDENT_SERIAL") or props.get("ID_SERIAL_SHORT")
            or props.get("ID_SERIAL") or "")


def queue_complete(queue: Path | str) -> bool:
    """Whether every queue attribute procfs reads is there and parses."""
    return not (any(_uint(read_text(f"{queue}/{name}")) is None for name in QUEUE_UINT)
                or any(_int(read_text(f"{queue}/{name}")) is None for name in QUEUE_INT)
                or any(read_text(f"{queue}/{name}") is None for name in QUEUE_TEXT))


def _uint(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.removeprefix("-").isdigit() else None


class DiskstatsCollector:
    """/proc/diskstats for the counters, the udev database (by default /run/udev/data) for
    identity, /sys/block/<dev> for rotational and device mapper backing devices."""

    def __init__(
        self,
        procfs: Path,
        sysfs: Path,
        device_include: str | None,
        device_exclude: str | None,
        udev_data: Path = Path("/run/udev/data"),
    ) -> None:
        self._diskstats = str(procfs / "diskstats")
        self._files = HeldFiles()  # /proc/diskstats and rotational attributes
        self._block = sysfs / "block"
        self._udev_data = udev_data
        self._filter = DeviceFilter(device_include, device_exclude)
        # (device, major, minor) -> whether its queue attributes are complete.
        self._queue_complete: dict[tuple[str, int, int], bool] = {}
        # udev database file -> (its stamp, its properties).
        self._udev_cache: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}
        self._unchanged: Unchanged[list[Metric]] = Unchanged()
        self._rotational_read: dict[str, str] = {}  # device -> its rotational attribute's path

    def ignored(self, device: str) -> bool:
        return self._filter.ignored(device)

    def collect(self) -> list[Metric]:
        data = self._files.read(self._diskstats)
        text = data.decode(errors="replace")
        devices = [(device, major, minor) for device, major, minor in _devices(text)
                   if not self.ignored(device)]
        # Per device what its labels come from: the udev database file's stamp (its
        # properties are parsed again when it changes), the rotational label, the backing
        # devices of a device mapper device.
        udev: dict[str, dict[str, str]] = {}
        rotation: dict[str, str] = {}
        slaves: dict[str, list[str]] = {}
        extras = []
        for device, major, minor in devices:
            stamp, udev[device] = self._udev(major, minor)
            rotation[device] = self._rotational(device, major, minor)
            if udev[device].get("DM_NAME"):
                slaves[device] = list_dir(f"{self._block}/{device}/slaves")
            extras.append((device, stamp, rotation[device], tuple(slaves.get(device, ()))))
        present = set(devices)
        for gone in [key for key in self._queue_complete if key not in present]:
            del self._queue_complete[gone]
        for device in self._rotational_read.keys() - rotation.keys():
            self._files.discard(self._rotational_read.pop(device))
        paths = {f"{self._udev_data}/b{major}:{minor}" for _, major, minor in devices}
        for stale in [path for path in self._udev_cache if path not in paths]:
            del self._udev_cache[stale]
        return self._unchanged.get((data, tuple(extras)), lambda: diskstats_families(
            [d for d in parse_diskstats(text) if not self.ignored(d.device)], udev, rotation,
            slaves))

    def _rotational(self, device: str, major: int, minor: int) -> str:
        """node_exporter's rotational label (base 2, "0" unless every queue attribute procfs reads
        is there), the other attributes checked once per device: which of
        them a device has is fixed by its kernel and driver, where rotational is writable."""
        queue = f"{self._block}/{device}/queue"
        path = self._rotational_read.get(device)
        if path is None:
            path = self._rotational_read[device] = f"{queue}/rotational"
        try:
            value = _uint(self._files.read(path).decode(errors="replace").strip())
        except OSError:
            value = None
        if not value:
            return "0"
        key = (device, major, minor)
        complete = self._queue_complete.get(key)
        if complete is None:
            complete = self._queue_complete[key] = queue_complete(queue)
        return format(value, "b") if complete else "0"

    def _udev(self, major: int, minor: int) -> tuple[tuple[int, int, int] | None, dict[str, str]]:
        """The stamp of the device's udev database file and its properties, parsed again only
        when the stamp changed (udev replaces the file on every event for the device)."""
        path = f"{self._udev_data}/b{major}:{minor}"
        try:
            stat = os.stat(path)
        except OSError:
            self._udev_cache.pop(path, None)
            return None, {}
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._udev_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached
        try:
            props = parse_udev(read_file_bytes(path).decode(errors="replace"))
        except OSError:
            self._udev_cache.pop(path, None)
            return None, {}
        self._udev_cache[path] = (stamp, props)
        return stamp, props


def _devices(text: str) -> list[tuple[str, int, int]]:
    """(name, major, minor) of the devices parse_diskstats reports, without parsing their
    counters."""
    devices = []
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            devices.append((parts[2], int(parts[0]), int(parts[1])))
    return devices


def diskstats_families(disks: list[Disk], udev: dict[str, dict[str, str]],
                       rotation: dict[str, str] | None = None,
                       slaves: dict[str, list[str]] | None = None) -> list[Metric]:
    """Families in node_exporter's order; those without any sample are left out. rotation:
    the rotational label per device ("0" where absent); slaves: the backing devices of
    device mapper devices."""
    rotation, slaves = rotation or {}, slaves or {}
    info = family("node_disk_info", "Info of /sys/block/<block_device>.", "gauge")
    # (family, its samples' name: a counter's carries _total, scale)
    stats = [(family(f"node_disk_{name}", help_text, "gauge"), f"node_disk_{name}", scale)
             if name in GAUGES else
             (family(f"node_disk_{name}", help_text, "counter"), f"node_disk_{name}_total", scale)
             for name, help_text, scale in STATS]
    filesystem = family("node_disk_filesystem_info", "Info about disk filesystem.", "gauge")
    device_mapper = family("node_disk_device_mapper_info", "Info about disk device mapper.",
                           "gauge")
    backing = family("node_disk_device_mapper_backing_device_info",
                     "Info about the underlying block devices of a device mapper device.",
                     "gauge")
    ata = {key: family(f"node_disk_{name}", help_text, "gauge")
           for key, (name, help_text) in ATA_PROPERTIES.items()}

    for disk in disks:
        dev, props = disk.device, udev.get(disk.device, {})
        get = props.get
        info.samples.append(sample("node_disk_info", {
            "device": dev, "major": str(disk.major), "minor": str(disk.minor),
            "path": get("ID_PATH", ""), "wwn": get("ID_WWN", ""), "model": get("ID_MODEL", ""),
            "serial": serial(props), "revision": get("ID_REVISION", ""),
            "rotational": rotation.get(dev, "0")}, 1.0))
        for (metric, sample_name, scale), raw in zip(stats, disk.stats, strict=False):
            metric.samples.append(sample(sample_name, {"device": dev}, raw * scale))
        if get("ID_FS_TYPE"):
            filesystem.samples.append(sample("node_disk_filesystem_info", {
                "device": dev, "type": get("ID_FS_TYPE", ""), "usage": get("ID_FS_USAGE", ""),
                "uuid": get("ID_FS_UUID", ""), "version": get("ID_FS_VERSION", "")}, 1.0))
        if get("DM_NAME"):
            device_mapper.samples.append(sample("node_disk_device_mapper_info", {
                "device": dev, "name": get("DM_NAME", ""), "uuid": get("DM_UUID", ""),
                "vg_name": get("DM_VG_NAME", ""), "lv_name": get("DM_LV_NAME", ""),
                "lv_layer": get("DM_LV_LAYER", "")}, 1.0))
            for backing_device in sorted(slaves.get(dev, [])):
                backing.samples.append(sample(
                    "node_disk_device_mapper_backing_device_info",
                    {"device": dev, "backing_device": backing_device}, 1.0))
        if get("ID_ATA"):
            for key, metric in ata.items():
                value = _number(get(key))
                if value is not None:
                    metric.samples.append(sample(metric.name, {"device": dev}, value))

    families: list[Metric] = [info, *(metric for metric, _, _ in stats), filesystem,
                              device_mapper, backing, *ata.values()]
    return [metric for metric in families if metric.samples]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def create(context: Context, settings: Any) -> DiskstatsCollector:
    return DiskstatsCollector(context.procfs, context.sysfs, settings.device_include,
                              settings.device_exclude, context.udev_data)
