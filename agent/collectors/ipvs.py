"""ipvs: node_ipvs_* from /proc/net/ip_vs_stats and /proc/net/ip_vs, as node_exporter's ipvs
collector: totals, and per backend the active and inactive connections and weight, summed over
backends that share the configured label set (--collector.ipvs.backend-labels).

No ip_vs_stats (the ip_vs module not loaded) means no series and no error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

BACKEND_LABELS = ("local_address", "local_port", "remote_address", "remote_port", "proto",
                  "local_mark")
STATS = (
    ("node_ipvs_connections", "The total number of connections made."),
    ("node_ipvs_incoming_packets", "The total number of incoming packets."),
    ("node_ipvs_outgoing_packets", "The total number of outgoing packets."),
    ("node_ipvs_incoming_bytes", "The total amount of incoming data."),
    ("node_ipvs_outgoing_bytes", "The total amount of outgoing data."),
)


def parse_backend_labels(text: str) -> tuple[str, ...]:
    """The flag's comma-separated labels, in node_exporter's order; unknown ones are an error."""
    wanted = {label for label in text.split(",") if label}
    unknown = sorted(wanted - set(BACKEND_LABELS))
    if unknown:
        raise ValueError(f"unknown IPVS backend labels: {', '.join(unknown)!r}")
    return tuple(label for label in BACKEND_LABELS if label in wanted)


def parse_ip_vs_stats(text: str) -> tuple[int, ...]:
    """The third line: connections, packets in/out, bytes in/out, in hexadecimal."""
    lines = text.split("\n", 3)
    if len(lines) != 4:
        raise ValueError("ip_vs_stats corrupt: too short")
    fields = lines[2].split()
    if len(fields) != 5:
        raise ValueError("ip_vs_stats corrupt: unexpected number of fields")
    return tuple(int(field, 16) for field in fields)


def parse_ip_port(text: str) -> tuple[str, int]:
    """'C0A80016:0CEA' or '[2620:0000:...:0001]:0050' -> ('192.168.0.22', 3306)."""
    if len(text) == 13:
        address = str(ipaddress.IPv4Address(bytes.fromhex(text[:8])))
    elif len(text) == 46:
        ip6 = ipaddress.IPv6Address(text[1:40])
        # Go prints an IPv4-mapped address as the IPv4 address.
        address = str(ip6.ipv4_mapped) if ip6.ipv4_mapped else str(ip6)
    else:
        raise ValueError(f"unexpected IP:Port: {text}")
    return address, int(text[-4:], 16)


@dataclass(frozen=True)
class Backend:
    local_address: str  # "" for a firewall-mark service
    local_port: int
    local_mark: str
    remote_address: str
    remote_port: int
    proto: str
    weight: int
    active: int
    inactive: int

    def label(self, name: str) -> str:
        return str(getattr(self, name))


def parse_ip_vs(text: str) -> list[Backend]:
    backends = []
    proto, mark, address, port = "", "", "", 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] in ("IP", "Prot") or fields[1:2] == ["RemoteAddress:Port"]:
            continue
        if fields[0] in ("TCP", "UDP") and len(fields) >= 2:
            proto, mark = fields[0], ""
            address, port = parse_ip_port(fields[1])
        elif fields[0] == "FWM" and len(fields) >= 2:
            proto, mark, address, port = "FWM", fields[1], "", 0
        elif fields[0] == "->" and len(fields) >= 6:
            remote, remote_port = parse_ip_port(fields[1])
            backends.append(Backend(address, port, mark, remote, remote_port, proto,
                                    int(fields[3]), int(fields[4]), int(fields[5])))
    return backends


def ipvs_families(stats: tuple[int, ...], backends: list[Backend],
                  labels: tuple[str, ...]) -> list[Metric]:
    families: list[Metric] = [CounterMetricFamily(name, help_text, value=value)
                              for (name, help_text), value in zip(STATS, stats, strict=True)]
    sums: dict[tuple[str, ...], list[int]] = {}
    for backend in backends:
        key = tuple(backend.label(label) for label in labels)
        total = sums.setdefault(key, [0, 0, 0])
        total[0] += backend.active
        total[1] += backend.inactive
        total[2] += backend.weight
    described = (
        ("node_ipvs_backend_connections_active",
         "The current active connections by local and remote address."),
        ("node_ipvs_backend_connections_inactive",
         "The current inactive connections by local and remote address."),
        ("node_ipvs_backend_weight", "The current backend weight by local and remote address."),
    )
    for index, (name, help_text) in enumerate(described):
        family = GaugeMetricFamily(name, help_text, labels=list(labels))
        for key, total in sums.items():
            family.add_metric(list(key), total[index])
        families.append(family)
    return go_order(families)


class IpvsCollector:
    def __init__(self, procfs: Path, backend_labels: str = ",".join(BACKEND_LABELS)) -> None:
        self._net = procfs / "net"
        self._labels = parse_backend_labels(backend_labels)
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        try:
            stats = (self._net / "ip_vs_stats").read_text()
        except FileNotFoundError:
            return []
        raw = (stats, (self._net / "ip_vs").read_text())
        return self._unchanged.get(raw, lambda: ipvs_families(
            parse_ip_vs_stats(stats), parse_ip_vs(raw[1]), self._labels))


def create(context: Context, settings: Any) -> IpvsCollector:
    return IpvsCollector(context.procfs, settings.backend_labels)
