"""arp: node_arp_entries{device}, the number of IPv4 neighbour entries per device.

As node_exporter's latest release, the entries come from an RTM_GETNEIGH dump over rtnetlink
by default (IPv4 entries without NUD_NOARP, which is what /proc/net/arp lists; an index no
longer naming an interface is skipped); --no-collector.arp.netlink reads /proc/net/arp.
"""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors import rtnetlink
from agent.collectors.common import DeviceFilter

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

HEADER_FIELDS = 9  # 'IP address  HW type  Flags  HW address  Mask  Device'
ENTRY_FIELDS = 6
NUD_NOARP = 0x40


def parse_arp(text: str) -> dict[str, int]:
    """/proc/net/arp -> {device: number of entries}, incomplete entries included."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) in (0, HEADER_FIELDS):
            continue
        if len(fields) != ENTRY_FIELDS:
            raise ValueError(f"invalid /proc/net/arp line: {line!r}")
        counts[fields[-1]] += 1
    return dict(counts)


def count_neighbours(messages: list[tuple[int, bytes]]) -> dict[int, int]:
    """RTM_NEWNEIGH payloads -> {interface index: IPv4 entries without NUD_NOARP}."""
    counts: Counter[int] = Counter()
    for kind, payload in messages:
        if kind != rtnetlink.RTM_NEWNEIGH or len(payload) < rtnetlink.NDMSG.size:
            continue
        family, index, state, _, _ = rtnetlink.NDMSG.unpack_from(payload)
        if family == socket.AF_INET and not state & NUD_NOARP:
            counts[index] += 1
    return dict(counts)


# Only IPv4 neighbours count: the kernel leaves the others out of the dump.
_GETNEIGH = rtnetlink.NDMSG.pack(socket.AF_INET, 0, 0, 0, 0)


def netlink_arp(sock: rtnetlink.Socket | None = None) -> dict[str, int]:
    """With sock, the dump is asked on it (else on a socket of its own)."""
    by_index = count_neighbours(rtnetlink.dump(rtnetlink.RTM_GETNEIGH, _GETNEIGH)
                                if sock is None else
                                sock.dump(rtnetlink.RTM_GETNEIGH, _GETNEIGH))
    # The name of each interface that has neighbours, now (one ioctl each, where a link
    # dump would list every interface with all its attributes and statistics); one gone
    # since the neighbour dump is left out.
    out = {}
    for index, count in by_index.items():
        try:
            out[socket.if_indextoname(index)] = count
        except OSError:
            continue
    return out


class ArpCollector:
    def __init__(self, procfs: Path, device_include: str | None,
                 device_exclude: str | None, netlink: bool = False) -> None:
        self._arp = procfs / "net" / "arp"
        self._filter = DeviceFilter(device_include, device_exclude)
        self._netlink = netlink
        self._socket = rtnetlink.Socket()

    def collect(self) -> list[Metric]:
        counts = netlink_arp(self._socket) if self._netlink else parse_arp(self._arp.read_text())
        return arp_families({d: n for d, n in counts.items() if not self._filter.ignored(d)})

    def close(self) -> None:
        self._socket.close()


def arp_families(counts: dict[str, int]) -> list[Metric]:
    family = GaugeMetricFamily("node_arp_entries", "ARP entries by device", labels=["device"])
    for device in sorted(counts):
        family.add_metric([device], float(counts[device]))
    return [family] if family.samples else []


def create(context: Context, settings: Any) -> ArpCollector:
    return ArpCollector(context.procfs, settings.device_include, settings.device_exclude,
                        netlink=settings.netlink)
