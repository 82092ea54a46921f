"""netclass's netlink mode (`--collector.netclass.netlink`), as node_exporter's latest release:
interface attributes from an rtnetlink link dump, speed and duplex from the ethtool generic
netlink family's link modes, and the three attributes netlink lacks (addr_assign_type, dev_id,
name_assign_type) from sysfs.

node_exporter's own quirks in this mode are kept, because the output is compared with it:
node_network_info has no adminstate label and another help text, duplex is the ethtool
library's name ("Full", "Half", "Unknown"), node_network_dormant carries the link mode, an
unknown speed (0xffffffff) is not recognised and is scaled like any other, and the statistics
of `--collector.netclass_rtnl.with-stats` are gauges.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors import rtnetlink

log = logging.getLogger("hostagent.netclass")

IFLA_TXQLEN, IFLA_OPERSTATE, IFLA_LINKMODE = 13, 16, 17
IFLA_IFALIAS, IFLA_STATS64, IFLA_GROUP = 20, 23, 27
IFLA_CARRIER, IFLA_CARRIER_CHANGES = 33, 35
IFLA_CARRIER_UP_COUNT, IFLA_CARRIER_DOWN_COUNT = 47, 48
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
OPER_UP = 6
# struct rtnl_link_stats64 in kernel order, with node_exporter's metric names.
STATS64 = (
    "receive_packets_total", "transmit_packets_total", "receive_bytes_total",
    "transmit_bytes_total", "receive_errors_total", "transmit_errors_total",
    "receive_dropped_total", "transmit_dropped_total", "multicast_total", "collisions_total",
    "receive_length_errors_total", "receive_over_errors_total", "receive_crc_errors_total",
    "receive_frame_errors_total", "receive_fifo_errors_total", "receive_missed_errors_total",
    "transmit_aborted_errors_total", "transmit_carrier_errors_total",
    "transmit_fifo_errors_total", "transmit_heartbeat_errors_total",
    "transmit_window_errors_total", "receive_compressed_total", "transmit_compressed_total",
    "receive_nohandler_total",
)
SYSFS_ONLY = ("addr_assign_type", "dev_id", "name_assign_type")

ETHTOOL_MSG_LINKMODES_GET, ETHTOOL_GENL_VERSION = 4, 1
ETHTOOL_A_LINKMODES_HEADER, ETHTOOL_A_LINKMODES_SPEED, ETHTOOL_A_LINKMODES_DUPLEX = 1, 5, 6
ETHTOOL_A_HEADER_DEV_NAME, ETHTOOL_A_HEADER_FLAGS = 2, 3
ETHTOOL_FLAG_COMPACT_BITSETS = 1
DUPLEX_NAMES = {0: "Half", 1: "Full", 255: "Unknown"}  # the Go library's Duplex.String()
# Errors meaning "no ethtool netlink here": the family or the operation is missing.
NO_ETHTOOL = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV})


@dataclass
class Link:
    index: int
    kind: int  # ARPHRD_* (node_network_protocol_type)
    flags: int
    name: str = ""
    address: str = ""
    broadcast: str = ""
    operstate: int = 0
    alias: str = ""
    mtu: int = 0
    link: int = 0  # IFLA_LINK, absent when it equals the index
    numbers: dict[str, int] = field(default_factory=dict)  # optional u8/u32 attributes
    stats: list[int] | None = None


@dataclass
class LinkMode:
    name: str
    speed: int  # Mbit/s as the kernel's u32, so 0xffffffff when unknown
    duplex: int


def hardware_address(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


_NUMBERS = {IFLA_TXQLEN: ("transmit_queue_length", "=I"), IFLA_LINKMODE: ("link_mode", "=B"),
            IFLA_GROUP: ("net_dev_group", "=I"), IFLA_CARRIER: ("carrier", "=B"),
            IFLA_CARRIER_CHANGES: ("carrier_changes_total", "=I"),
            IFLA_CARRIER_UP_COUNT: ("carrier_up_changes_total", "=I"),
            IFLA_CARRIER_DOWN_COUNT: ("carrier_down_changes_total", "=I")}


def parse_link(payload: bytes) -> Link | None:
    """An RTM_NEWLINK message's fields; None if too short to be one."""
    if len(payload) < rtnetlink.IFINFOMSG.size:
        return None
    _, kind, index, flags, _ = rtnetlink.IFINFOMSG.unpack_from(payload)
    link = Link(index, kind, flags)
    for attr, value in rtnetlink.attributes(payload[rtnetlink.IFINFOMSG.size:]):
        if attr == rtnetlink.IFLA_IFNAME:
            link.name = rtnetlink.c_string(value)
        elif attr == rtnetlink.IFLA_ADDRESS:
            link.address = hardware_address(value)
        elif attr == rtnetlink.IFLA_BROADCAST:
            link.broadcast = hardware_address(value)
        elif attr == IFLA_OPERSTATE and value:
            link.operstate = value[0]
        elif attr == IFLA_IFALIAS:
            link.alias = rtnetlink.c_string(value)
        elif attr == rtnetlink.IFLA_MTU and len(value) >= 4:
            link.mtu = struct.unpack_from("=I", value)[0]
        elif attr == rtnetlink.IFLA_LINK and len(value) >= 4:
            link.link = struct.unpack_from("=I", value)[0]
        elif attr == IFLA_STATS64:
            # Older kernels send fewer counters (no rx_nohandler): those read as 0.
            count = min(len(value) // 8, len(STATS64))
            link.stats = [*struct.unpack_from(f"={count}Q", value), *[0] * (len(STATS64) - count)]
        elif attr in _NUMBERS:
            name, fmt = _NUMBERS[attr]
            if len(value) >= struct.calcsize(fmt):
                link.numbers[name] = struct.unpack_from(fmt, value)[0]
    return link


def dump_links() -> list[Link]:
    request = rtnetlink.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    links = []
    for kind, payload in rtnetlink.dump(rtnetlink.RTM_GETLINK, request):
        parsed = parse_link(payload) if kind == rtnetlink.RTM_NEWLINK else None
        if parsed is not None:
            links.append(parsed)
    return links


def parse_link_mode(payload: bytes) -> LinkMode:
    mode = LinkMode("", 0, 0)
    for attr, value in rtnetlink.attributes(payload[rtnetlink.GENLMSGHDR.size:]):
        if attr == ETHTOOL_A_LINKMODES_HEADER:
            name = rtnetlink.attribute_map(value).get(ETHTOOL_A_HEADER_DEV_NAME)
            mode.name = rtnetlink.c_string(name) if name is not None else ""
        elif attr == ETHTOOL_A_LINKMODES_SPEED and len(value) >= 4:
            mode.speed = struct.unpack_from("=I", value)[0]
        elif attr == ETHTOOL_A_LINKMODES_DUPLEX and value:
            mode.duplex = value[0]
    return mode


def dump_link_modes() -> list[LinkMode] | None:
    """Every device's ethtool link modes; None where this kernel has no ethtool netlink."""
    try:
        family = rtnetlink.genl_family_id("ethtool")
        encode = rtnetlink.encode_attribute
        header = encode(ETHTOOL_A_HEADER_FLAGS, struct.pack("=I", ETHTOOL_FLAG_COMPACT_BITSETS))
        request = rtnetlink.GENLMSGHDR.pack(
            ETHTOOL_MSG_LINKMODES_GET, ETHTOOL_GENL_VERSION, 0) + encode(
            ETHTOOL_A_LINKMODES_HEADER | rtnetlink.NLA_F_NESTED, header)
        replies = rtnetlink.dump(family, request, rtnetlink.NETLINK_GENERIC)
    except OSError as exc:
        if exc.errno not in NO_ETHTOOL:
            raise
        log.info("ETHTOOL netlink interface unavailable, duplex and linkspeed are not scraped.")
        return None
    return [parse_link_mode(payload) for kind, payload in replies if kind == family]


def netlink_families(links: list[Link], modes: list[LinkMode] | None,
                     sysfs_attributes: dict[str, dict[str, str]], with_stats: bool
                     ) -> list[Metric]:
    up = GaugeMetricFamily("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.",
                           labels=["device"])
    info = GaugeMetricFamily(
        "node_network_info", "Non-numeric data of <iface>, value is always 1.",
        labels=["device", "address", "broadcast", "duplex", "operstate", "ifalias"])
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def push(name: str, device: str, value: int | None, counter: bool = False) -> None:
        if value is None:
            return
        if name not in families:
            families[name] = (CounterMetricFamily if counter else GaugeMetricFamily)(
                f"node_network_{name}", f"Network device property: {name}", labels=["device"])
        families[name].add_metric([device], float(value))

    duplexes: dict[str, str] = {}
    for mode in modes or ():
        push("speed_bytes", mode.name, mode.speed * 1000 * 1000 // 8)
        duplexes[mode.name] = DUPLEX_NAMES.get(mode.duplex, f"Duplex({mode.duplex})")
    for link in links:
        device, numbers = link.name, link.numbers
        up.add_metric([device], 1.0 if link.operstate == OPER_UP else 0.0)
        operstate = OPERSTATES[link.operstate] if link.operstate < len(OPERSTATES) else "unknown"
        info.add_metric([device, link.address, link.broadcast, duplexes.get(device, ""),
                         operstate, link.alias], 1.0)
        attributes = sysfs_attributes.get(device, {})
        push("address_assign_type", device, _int(attributes.get("addr_assign_type")))
        push("carrier", device, numbers.get("carrier"))
        for name in ("carrier_changes_total", "carrier_up_changes_total",
                     "carrier_down_changes_total"):
            push(name, device, numbers.get(name), counter=True)
        push("device_id", device, _int(attributes.get("dev_id")))
        push("flags", device, link.flags)
        push("iface_id", device, link.index)
        push("iface_link_mode", device, numbers.get("link_mode"))
        push("dormant", device, numbers.get("link_mode"))  # sic: node_exporter's value
        push("iface_link", device, link.link if link.link > 0 else link.index)
        push("mtu_bytes", device, link.mtu)
        push("name_assign_type", device, _int(attributes.get("name_assign_type")))
        push("net_dev_group", device, numbers.get("net_dev_group"))
        push("transmit_queue_length", device, numbers.get("transmit_queue_length"))
        push("protocol_type", device, link.kind)
        if with_stats and link.stats is not None:
            for name, value in zip(STATS64, link.stats, strict=True):
                push(name, device, value)
    metrics: list[Metric] = [up, info, *families.values()]
    return [family for family in metrics if family.samples]


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        return None


ReadAttribute = Callable[[Path], "str | None"]


def read_sysfs_only(class_net: Path, devices: list[str], read: ReadAttribute
                    ) -> dict[str, dict[str, str]]:
    """The attributes netlink does not carry, per device (a missing one left out), read with
    the sysfs mode's reader."""
    found: dict[str, dict[str, str]] = {}
    for device in devices:
        values = {name: read(class_net / device / name) for name in SYSFS_ONLY}
        found[device] = {name: value for name, value in values.items() if value is not None}
    return found


def collect_netlink(class_net: Path, ignored: re.Pattern[str], with_stats: bool,
                    read: ReadAttribute) -> list[Metric]:
    modes = dump_link_modes()
    if modes is not None:
        modes = [mode for mode in modes if not ignored.search(mode.name)]
    links = [link for link in dump_links() if not ignored.search(link.name)]
    attributes = read_sysfs_only(class_net, [link.name for link in links], read)
    return netlink_families(links, modes, attributes, with_stats)
