"""netclass: node_network_* device properties from /sys/class/net/<device>, as node_exporter's
latest release.

An attribute the device does not have is skipped, whether its file is missing or the kernel
refuses to read it (speed and duplex of virtual devices fail with EINVAL, phys_port_id with
EOPNOTSUPP); any other read error fails the run.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, open_dir
from agent.collectors.heldfiles import HeldFile, Share, kernel_generated

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# (metric suffix, sysfs attribute, is a counter), in node_exporter's order.
PROPERTIES: tuple[tuple[str, str, bool], ...] = (
    ("address_assign_type", "addr_assign_type", False),
    ("carrier", "carrier", False),
    ("carrier_changes_total", "carrier_changes", True),
    ("carrier_up_changes_total", "carrier_up_count", True),
    ("carrier_down_changes_total", "carrier_down_count", True),
    ("device_id", "dev_id", False),
    ("dormant", "dormant", False),
    ("flags", "flags", False),
    ("iface_id", "ifindex", False),
    ("iface_link", "iflink", False),
    ("iface_link_mode", "link_mode", False),
    ("mtu_bytes", "mtu", False),
    ("name_assign_type", "name_assign_type", False),
    ("net_dev_group", "netdev_group", False),
    ("speed_bytes", "speed", False),
    ("transmit_queue_length", "tx_queue_len", False),
    ("protocol_type", "type", False),
)
# node_network_info's labels after device: attributes of the same name ("" if absent), and
# adminstate from the IFF_UP bit of flags ("unknown" without flags).
INFO_LABELS = ("address", "broadcast", "duplex", "operstate", "adminstate", "ifalias")
ATTRIBUTES = frozenset({attribute for _, attribute, _ in PROPERTIES} | set(INFO_LABELS))
IFF_UP = 0x1

# Errors that mean "this device has no such attribute" (node_exporter's procfs skips the same).
UNREADABLE = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP})
# node_exporter reads sysfs attributes with a single 128-byte read; longer values are cut.
READ_SIZE = 128

Interfaces = dict[str, dict[str, str]]  # device -> {attribute: trimmed value}
# device -> (its directory's (st_dev, st_ino), its attributes present then, held)
Held = dict[str, tuple[tuple[int, int], list[tuple[str, HeldFile]]]]


def _sysfs_read(path: str | Path, dir_fd: int | None = None) -> bytes:
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        return os.read(fd, READ_SIZE)
    finally:
        os.close(fd)


def read_attribute(path: str | Path, dir_fd: int | None = None) -> str | None:
    """An attribute's trimmed value, or None if the device does not have it. With dir_fd,
    path is relative to that open directory (saves resolving the device path per file)."""
    try:
        data = _sysfs_read(path, dir_fd)
    except OSError as exc:
        if exc.errno in UNREADABLE:
            return None
        raise
    return data.decode(errors="replace").strip()


def read_interfaces(class_net: Path, ignored: re.Pattern[str], held: Held | None = None,
                    share: Share | None = None) -> Interfaces:
    """The attributes of every device not matching ignored (unanchored); a missing or
    unreadable class/net directory gives no device, as node_exporter's ErrNoData. With held
    (on sysfs only), devices' attribute files are kept open there between calls, within
    share (the caller's, kept with held)."""
    try:
        with os.scandir(class_net) as entries:  # regular files, e.g. bonding_masters, skipped
            devices = sorted(e.name for e in entries if not e.is_file(follow_symlinks=False))
    except (FileNotFoundError, PermissionError):
        return {}
    interfaces: Interfaces = {}
    if share is None:
        share = Share()
    for device in devices:
        if ignored.search(device):
            continue
        path = os.path.join(class_net, device)
        if held is not None:
            held_values = _read_held(path, device, held, share)
            if held_values is not None:
                interfaces[device] = held_values
                continue
        try:
            dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # the device went away since the listing
            continue
        try:
            present = sorted(ATTRIBUTES.intersection(os.listdir(dir_fd)))
            values = {name: read_attribute(name, dir_fd) for name in present}
        finally:
            os.close(dir_fd)
        interfaces[device] = {name: value for name, value in values.items() if value is not None}
    if held is not None:
        for device in held.keys() - interfaces.keys():
            del held[device]  # their files close as they are dropped
    return interfaces


def _read_held(path: str, device: str, held: Held, share: Share) -> dict[str, str] | None:
    """The device's attributes through its held files, opened first if the path now names
    another directory than the one held (a device renamed, or removed and added again:
    sysfs gives every directory its own inode). None to read it the plain way: no room to
    hold its files, or it went away."""
    try:
        status = os.stat(path)
    except OSError:
        held.pop(device, None)
        return None
    entry = held.get(device)
    if entry is None or entry[0] != (status.st_dev, status.st_ino):
        held.pop(device, None)
        if share.available() < len(ATTRIBUTES):
            return None
        try:
            dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return None
        try:
            opened = os.fstat(dir_fd)
            files = []
            for name in sorted(ATTRIBUTES.intersection(os.listdir(dir_fd))):
                try:
                    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
                except OSError:  # tried by its path again on each read
                    files.append((name, HeldFile(os.path.join(path, name), READ_SIZE,
                                                 share)))
                else:
                    files.append((name, HeldFile.adopt(os.path.join(path, name), fd,
                                                       READ_SIZE, share)))
        finally:
            os.close(dir_fd)
        entry = held[device] = ((opened.st_dev, opened.st_ino), files)
    values: dict[str, str] = {}
    for name, file in entry[1]:
        try:
            values[name] = file.read().decode(errors="replace").strip()
        except OSError as exc:
            if exc.errno not in UNREADABLE:
                raise
    return values


def parse_int(text: str) -> int | None:
    """Decimal, or hexadecimal with 0x (flags, dev_id); None if neither."""
    try:
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        return None


def admin_state(flags: str | None) -> str:
    value = parse_int(flags) if flags is not None else None
    if value is None:
        return "unknown"
    return "up" if value & IFF_UP else "down"


class NetclassCollector:
    def __init__(self, sysfs: Path, ignored_devices: str, ignore_invalid_speed: bool,
                 netlink: bool = False, netlink_with_stats: bool = False) -> None:
        self._class_net = sysfs / "class" / "net"
        self._ignored = re.compile(ignored_devices)
        self._ignore_invalid_speed = ignore_invalid_speed
        self._netlink = netlink
        self._netlink_with_stats = netlink_with_stats
        self._unchanged: Unchanged[list[Metric]] = Unchanged()
        self._held: Held = {}
        self._share = Share()
        self._on_sysfs: bool | None = None  # whether class/net is, once it could be opened

    def _holding(self) -> Held | None:
        if self._on_sysfs is None:
            try:
                with open_dir(self._class_net) as fd:
                    self._on_sysfs = kernel_generated(fd)
            except OSError:
                return None
        return self._held if self._on_sysfs else None

    def collect(self) -> list[Metric]:
        if self._netlink:
            from agent.collectors.netclass_netlink import collect_netlink
            return collect_netlink(self._class_net, self._ignored, self._netlink_with_stats,
                                   read_attribute)
        interfaces = read_interfaces(self._class_net, self._ignored, self._holding(),
                                     self._share)
        raw = tuple((device, tuple(values.items())) for device, values in interfaces.items())
        return self._unchanged.get(
            raw, lambda: netclass_families(interfaces, self._ignore_invalid_speed))


def netclass_families(interfaces: Interfaces, ignore_invalid_speed: bool) -> list[Metric]:
    up = GaugeMetricFamily("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.",
                           labels=["device"])
    info = GaugeMetricFamily(
        "node_network_info", "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        labels=["device", *INFO_LABELS])
    properties = {
        name: (CounterMetricFamily if counter else GaugeMetricFamily)(
            f"node_network_{name}", f"Network device property: {name}", labels=["device"])
        for name, _, counter in PROPERTIES
    }
    for device, attributes in interfaces.items():
        up.add_metric([device], 1.0 if attributes.get("operstate") == "up" else 0.0)
        labels = {label: attributes.get(label, "") for label in INFO_LABELS}
        labels["adminstate"] = admin_state(attributes.get("flags"))
        info.add_metric([device, *labels.values()], 1.0)
        for name, attribute, _ in PROPERTIES:
            value = parse_int(attributes.get(attribute, ""))
            if value is None:
                continue
            if name == "speed_bytes":
                if value < 0 and ignore_invalid_speed:  # -1: speed unknown
                    continue
                value = value * 1000 * 1000 // 8  # Mbit/s -> bytes/s
            properties[name].add_metric([device], float(value))
    families: list[Metric] = [up, info, *properties.values()]
    return [family for family in families if family.samples]


def create(context: Context, settings: Any) -> NetclassCollector:
    return NetclassCollector(context.sysfs, settings.ignored_devices,
                             settings.ignore_invalid_speed, settings.netlink,
                             settings.netlink_with_stats)
