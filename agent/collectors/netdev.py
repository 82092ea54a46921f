"""netdev: node_network_{receive,transmit}_*_total per device, with node_exporter's names.

node_exporter's default reads each interface's rtnl_link_stats64 over netlink, as here on the
host's /sys (one dump for every interface). With another sysfs tree (a host's /sys mounted in a
container, a fixture), the same counters, unmodified, are read from its
class/net/<device>/statistics/ files. /proc/net/dev, which the netlink option switched off
selects, folds several of them together (drop = rx_dropped +
rx_missed_errors, frame = four error kinds, ...) and lacks receive_nohandler. With
enable_detailed_metrics every counter keeps its own kernel name; without it they are folded
into /proc/net/dev's names and sums, as node_exporter does. label_ifalias adds each device's
ifalias label; address_info adds node_network_address_info from an RTM_GETADDR dump.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors import rtnetlink
from agent.collectors.common import (
    DeviceFilter,
    family,
    list_dir,
    read_file_bytes,
    read_text,
    sample,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NetStats = dict[str, dict[str, float]]

# /sys/class/net/<device>/statistics file -> node_exporter's netlink name
NETLINK_STATS = {
    "rx_packets": "receive_packets", "tx_packets": "transmit_packets",
    "rx_bytes": "receive_bytes", "tx_bytes": "transmit_bytes",
    "rx_errors": "receive_errors", "tx_errors": "transmit_errors",
    "rx_dropped": "receive_dropped", "tx_dropped": "transmit_dropped",
    "multicast": "multicast", "collisions": "collisions",
    "rx_length_errors": "receive_length_errors", "rx_over_errors": "receive_over_errors",
    "rx_crc_errors": "receive_crc_errors", "rx_frame_errors": "receive_frame_errors",
    "rx_fifo_errors": "receive_fifo_errors", "rx_missed_errors": "receive_missed_errors",
    "tx_aborted_errors": "transmit_aborted_errors",
    "tx_carrier_errors": "transmit_carrier_errors", "tx_fifo_errors": "transmit_fifo_errors",
    "tx_heartbeat_errors": "transmit_heartbeat_errors",
    "tx_window_errors": "transmit_window_errors",
    "rx_compressed": "receive_compressed", "tx_compressed": "transmit_compressed",
    "rx_nohandler": "receive_nohandler",
}
# Without detailed metrics, node_exporter folds the netlink counters into /proc/net/dev's
# names and sums, as the kernel's dev_seq_printf_stats does: name -> (folded name, added).
LEGACY: dict[str, tuple[str, tuple[str, ...]]] = {
    "receive_errors": ("receive_errs", ()),
    "receive_dropped": ("receive_drop", ("receive_missed_errors",)),
    "receive_fifo_errors": ("receive_fifo", ()),
    "receive_frame_errors": ("receive_frame", ("receive_length_errors", "receive_over_errors",
                                               "receive_crc_errors")),
    "multicast": ("receive_multicast", ()),
    "transmit_errors": ("transmit_errs", ()),
    "transmit_dropped": ("transmit_drop", ()),
    "transmit_fifo_errors": ("transmit_fifo", ()),
    "collisions": ("transmit_colls", ()),
    "transmit_carrier_errors": ("transmit_carrier", ("transmit_aborted_errors",
                                                     "transmit_heartbeat_errors",
                                                     "transmit_window_errors")),
}
# With detailed metrics in /proc/net/dev mode: procfs's names for the columns node_exporter's
# legacy folding would rename back.
DETAILED_PROC = {"receive_errs": "receive_errors", "receive_drop": "receive_dropped",
                 "transmit_errs": "transmit_errors", "transmit_drop": "transmit_dropped"}


def legacy_names(counters: dict[str, float]) -> dict[str, float]:
    """node_exporter's legacy(): each folded counter is popped and its addends summed in."""
    out = dict(counters)
    for name, (folded, addends) in LEGACY.items():
        if name in out:
            value = out.pop(name)
            out[folded] = value + sum(out.pop(addend, 0.0) for addend in addends)
    return out


IFLA_STATS64 = 23
# struct rtnl_link_stats64: its first fields, in NETLINK_STATS's order (newer kernels add more).
_STATS64 = struct.Struct(f"={len(NETLINK_STATS)}Q")
_LINK_ATTRIBUTES = frozenset({rtnetlink.IFLA_IFNAME, IFLA_STATS64})


def parse_link_stats(replies: list[tuple[int, bytes]]) -> dict[str, dict[str, float]]:
    """RTM_GETLINK dump -> {device: counters under netlink names}."""
    return {device: link_counters(raw) for device, raw in raw_link_stats(replies).items()}


def raw_link_stats(replies: list[tuple[int, bytes]]) -> dict[str, bytes]:
    """RTM_GETLINK dump -> {device: its rtnl_link_stats64 as sent}, devices without it left
    out."""
    stats = {}
    for kind, payload in replies:
        if kind != rtnetlink.RTM_NEWLINK or len(payload) < rtnetlink.IFINFOMSG.size:
            continue
        attributes = rtnetlink.attribute_map(payload[rtnetlink.IFINFOMSG.size:], _LINK_ATTRIBUTES)
        name, raw = attributes.get(rtnetlink.IFLA_IFNAME), attributes.get(IFLA_STATS64)
        if name is None or raw is None or len(raw) < _STATS64.size:
            continue
        stats[rtnetlink.c_string(name)] = raw
    return stats


def link_counters(raw: bytes) -> dict[str, float]:
    """rtnl_link_stats64 -> counters under netlink names."""
    return dict(zip(NETLINK_STATS.values(), map(float, _STATS64.unpack_from(raw)), strict=True))


_GETLINK = rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)


def dump_link_stats() -> dict[str, dict[str, float]]:
    return parse_link_stats(rtnetlink.dump(rtnetlink.RTM_GETLINK, _GETLINK))


def read_link_stats(statistics: Path | str) -> dict[str, float] | None:
    """A device's counters under netlink names; None when it has no statistics directory.
    A counter the kernel does not provide reads as 0, as netlink reports it."""
    try:
        # Files opened relative to the directory: no path resolution per counter.
        dir_fd = os.open(statistics, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    counters = {}
    try:
        for filename, name in NETLINK_STATS.items():
            try:
                counters[name] = float(int(read_file_bytes(filename, dir_fd)))
            except (OSError, ValueError):
                counters[name] = 0.0
    finally:
        os.close(dir_fd)
    return counters


def parse_net_dev(text: str) -> NetStats:
    """/proc/net/dev -> {device: {'receive_bytes': ..., 'transmit_colls': ...}}.

    Column names come from the two header lines, so they read exactly as node_exporter's.
    """
    lines = text.splitlines()
    header = lines[1].split("|") if len(lines) > 1 else []
    if len(header) != 3:
        raise ValueError(f"invalid /proc/net/dev header: {lines[:2]!r}")
    keys = [f"receive_{column}" for column in header[1].split()]
    keys += [f"transmit_{column}" for column in header[2].split()]
    stats: NetStats = {}
    for line in filter(str.strip, lines[2:]):
        device, _, rest = line.partition(":")
        values = rest.split()
        if len(values) != len(keys):
            raise ValueError(f"invalid /proc/net/dev line: {line!r}")
        stats[device.strip()] = {key: float(value) for key, value in zip(keys, values, strict=True)}
    return stats


class NetdevCollector:
    def __init__(self, procfs: Path, device_include: str | None, device_exclude: str | None,
                 sysfs: Path | None = None, netlink: bool = True,
                 detailed: bool = False, address_info: bool = False,
                 label_ifalias: bool = False) -> None:
        self._net_dev = str(procfs / "net" / "dev")
        self._sysfs_net = sysfs / "class" / "net" if sysfs is not None else None
        self._host = sysfs is not None and os.path.realpath(sysfs) == "/sys"
        self._filter = DeviceFilter(device_include, device_exclude)
        self._netlink = netlink
        self._detailed = detailed
        self._address_info = address_info
        self._label_ifalias = label_ifalias
        # The host's netlink mode: its socket, each device's last rtnl_link_stats64 and
        # counters, the last stats and their families by counter.
        self._socket = rtnetlink.Socket()
        self._links: dict[str, tuple[bytes, dict[str, float] | None]] = {}
        self._previous: NetStats = {}
        self._built: dict[str, Metric] = {}

    def collect(self) -> list[Metric]:
        if self._netlink and self._host and not self._label_ifalias:
            families = self._host_families()
        else:
            families = netdev_families(self._stats(),
                                       self._aliases() if self._label_ifalias else None)
        if self._address_info:
            families += address_info_families(dump_addresses())
        return families

    def _stats(self) -> NetStats:
        if self._netlink and self._host:
            stats = {dev: counters for dev, counters in self._host_stats().items()
                     if counters is not None}
        elif self._netlink and self._sysfs_net is not None and self._sysfs_net.is_dir():
            stats = self._link_stats()
        else:
            parsed = parse_net_dev(read_file_bytes(self._net_dev).decode())
            stats = {dev: counters for dev, counters in parsed.items()
                     if not self._filter.ignored(dev)}
            if self._detailed:
                stats = {dev: {DETAILED_PROC.get(k, k): v for k, v in counters.items()}
                         for dev, counters in stats.items()}
        return stats

    def _host_stats(self) -> dict[str, dict[str, float] | None]:
        """The host's devices by name, sorted, each with its counters (None: filtered out).
        A device whose rtnl_link_stats64 reads the same bytes as last time keeps the same
        counters object: most of a host's interfaces are idle most of the time."""
        raw = raw_link_stats(self._socket.dump(rtnetlink.RTM_GETLINK, _GETLINK))
        previous = self._links
        links: dict[str, tuple[bytes, dict[str, float] | None]] = {}
        for device in sorted(raw):
            data = raw[device]
            known = previous.get(device)
            if known is None or known[0] != data:
                ignored = self._filter.ignored(device) if known is None else known[1] is None
                counters = None
                if not ignored:
                    counters = link_counters(data)
                    if not self._detailed:
                        counters = legacy_names(counters)
                known = (data, counters)
            links[device] = known
        self._links = links
        return {device: counters for device, (_, counters) in links.items()}

    def _host_families(self) -> list[Metric]:
        """netdev_families of the host's devices, each family handed out again as the same
        object while its samples are all the same (every device here has the same counters,
        from the same rtnl_link_stats64 fields)."""
        stats = {dev: counters for dev, counters in self._host_stats().items()
                 if counters is not None}
        previous, self._previous = self._previous, stats
        if not stats:
            self._built = {}
            return []
        keys = sorted(next(iter(stats.values())))
        built = self._built
        if list(stats) != list(previous) or not built:
            changed: Iterable[str] = keys
            built.clear()
        else:
            changed = set()
            for device, counters in stats.items():
                before = previous[device]
                if counters is not before:
                    changed.update(key for key, value in counters.items() if before[key] != value)
        for key in changed:
            built[key] = counter_family(key, stats)
        return [built[key] for key in keys]

    def close(self) -> None:
        self._socket.close()

    def _link_stats(self) -> NetStats:
        assert self._sysfs_net is not None
        stats: NetStats = {}
        for device in sorted(os.listdir(self._sysfs_net)):
            if self._filter.ignored(device):
                continue
            counters = read_link_stats(f"{self._sysfs_net}/{device}/statistics")
            if counters is not None:
                stats[device] = counters if self._detailed else legacy_names(counters)
        return stats

    def _aliases(self) -> dict[str, str]:
        """ifalias of every /sys/class/net device ("" when it has none), as node_exporter's
        label-ifalias reads them from sysfs."""
        if self._sysfs_net is None:
            return {}
        aliases = {}
        for device in list_dir(self._sysfs_net):
            path = self._sysfs_net / device
            if path.is_dir():
                aliases[device] = read_text(path / "ifalias") or ""
        return aliases


_DEVICE, _DEVICE_ALIAS = ("device",), ("device", "ifalias")


def netdev_families(stats: NetStats, aliases: dict[str, str] | None = None) -> list[Metric]:
    """One counter family per statistic; with aliases, the devices sysfs knows also carry
    the ifalias label (node_exporter's --collector.netdev.label-ifalias)."""
    # key -> (family, its samples' name, the label names of its first sample: as
    # CounterMetricFamily's add_metric, later samples' values are zipped with those)
    families: dict[str, tuple[Metric, str, tuple[str, ...]]] = {}
    for device, counters in stats.items():
        alias = aliases.get(device) if aliases is not None else None
        labels = _DEVICE if alias is None else _DEVICE_ALIAS
        values = (device,) if alias is None else (device, alias)
        pairs = dict(zip(labels, values, strict=True))
        for key, value in counters.items():
            entry = families.get(key)
            if entry is None:
                name = f"node_network_{key}".removesuffix("_total")
                entry = families[key] = (
                    family(name, f"Network device statistic {key}.", "counter"),
                    name + "_total", labels)
            metric, sample_name, names = entry
            own = pairs.copy() if names is labels else dict(zip(names, values, strict=False))
            metric.samples.append(sample(sample_name, own, value))
    return [families[key][0] for key in sorted(families)]


def counter_family(key: str, stats: NetStats) -> Metric:
    """netdev_families' family of one counter, for devices that all have it."""
    name = f"node_network_{key}".removesuffix("_total")
    total = name + "_total"
    return family(name, f"Network device statistic {key}.", "counter",
                  [sample(total, {"device": device}, counters[key])
                   for device, counters in stats.items()])


# --- node_network_address_info (--collector.netdev.address-info) -------------------------------

IFA_ADDRESS, IFA_LOCAL = 1, 2


def parse_address(payload: bytes) -> tuple[int, int, bytes] | None:
    """One RTM_NEWADDR payload -> (interface index, prefix length, address bytes), as Go's
    net package reads it: IFA_LOCAL where present (point-to-point links carry the peer in
    IFA_ADDRESS), else the first attribute; None for families other than IPv4 and IPv6."""
    if len(payload) < rtnetlink.IFADDRMSG.size:
        raise ValueError(f"short address message, len={len(payload)}")
    family, prefixlen, _, _, index = rtnetlink.IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = list(rtnetlink.attributes(payload[rtnetlink.IFADDRMSG.size:]))
    point_to_point = any(kind == IFA_LOCAL for kind, _ in attrs)
    size = 4 if family == socket.AF_INET else 16
    for kind, value in attrs:
        if point_to_point and kind == IFA_ADDRESS:
            continue
        if len(value) >= size:
            return index, prefixlen, value[:size]
        return None
    return None


def dump_addresses() -> list[tuple[str, str, int]]:
    """(device, address, prefix length) of every interface address."""
    names = rtnetlink.link_names()
    found = []
    request = rtnetlink.IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    for kind, payload in rtnetlink.dump(rtnetlink.RTM_GETADDR, request):
        parsed = parse_address(payload) if kind == rtnetlink.RTM_NEWADDR else None
        if parsed is not None and parsed[0] in names:
            index, prefixlen, raw = parsed
            found.append((names[index], str(ipaddress.ip_address(raw)), prefixlen))
    return found


def address_scope(text: str) -> str:
    """Go's net.IP classification as node_exporter maps it to a scope."""
    ip = ipaddress.ip_address(text)
    if ip.version == 6 and ip.ipv4_mapped is not None:  # Go treats these as IPv4
        ip = ip.ipv4_mapped
    raw = ip.packed
    if ip.is_loopback or ip in LINK_LOCAL_UNICAST[ip.version] or _link_local_multicast(raw):
        return "link-local"
    if ip.version == 6 and raw[0] == 0xFF and raw[1] & 0x0F == 0x01:
        return "interface-local"
    if not ip.is_unspecified and not ip.is_multicast and \
            not (ip.version == 4 and raw == b"\xff\xff\xff\xff"):
        return "global"
    return ""


LINK_LOCAL_UNICAST = {4: ipaddress.ip_network("169.254.0.0/16"),
                      6: ipaddress.ip_network("fe80::/10")}


def _link_local_multicast(raw: bytes) -> bool:
    if len(raw) == 4:
        return raw[:3] == b"\xe0\x00\x00"
    return raw[0] == 0xFF and raw[1] & 0x0F == 0x02


def address_info_families(addresses: list[tuple[str, str, int]]) -> list[Metric]:
    family = GaugeMetricFamily("node_network_address_info", "node network address by device",
                               labels=["device", "address", "netmask", "scope"])
    seen = set()
    for device, address, prefixlen in addresses:
        labels = (device, address, str(prefixlen), address_scope(address))
        if labels not in seen:
            seen.add(labels)
            family.add_metric(list(labels), 1.0)
    return [family] if family.samples else []


def create(context: Context, settings: Any) -> NetdevCollector:
    return NetdevCollector(context.procfs, settings.device_include, settings.device_exclude,
                           sysfs=context.sysfs, netlink=settings.netlink,
                           detailed=settings.enable_detailed_metrics,
                           address_info=settings.address_info,
                           label_ifalias=settings.label_ifalias)
