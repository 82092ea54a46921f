"""network_route: node_network_route_info and node_network_routes{device}, as node_exporter's
network_route collector (off by default): the unicast routes of every table and address
family from an RTM_GETROUTE dump over rtnetlink. A multipath route gives one series per next
hop, with its weight; src is the preferred source (RTA_PREFSRC)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors import rtnetlink

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

RTN_UNICAST = 1
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_MULTIPATH = 1, 4, 5, 6, 7, 9
_RTNEXTHOP = struct.Struct("=HBBi")  # length, flags, hops (weight - 1), ifindex
# include/uapi/linux/rtnetlink.h, as node_exporter names them; anything else is "unknown".
PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated",
             9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp",
             15: "ntk", 16: "dhcp", 17: "mrouted", 42: "babel", 186: "bgp", 187: "isis",
             188: "ospf", 189: "rip", 192: "eigrp"}


@dataclass(frozen=True)
class Route:
    ifindex: int
    src: str
    dest: str
    gateway: str
    priority: int
    protocol: int
    weight: str  # "" for a single-path route


def _ip(value: bytes | None) -> str:
    """Go's net.IP.String() of a 4- or 16-byte address; "" when absent."""
    if not value:
        return ""
    address = ipaddress.ip_address(value)
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _dest(value: bytes | None, length: int) -> str:
    return "default" if length == 0 else f"{_ip(value)}/{length}"


def parse_route(payload: bytes) -> list[Route]:
    """One RTM_NEWROUTE payload -> its routes (one per next hop); none unless unicast."""
    if len(payload) < rtnetlink.RTMSG.size:
        raise ValueError(f"short route message, len={len(payload)}")
    _, dst_len, _, _, _, protocol, _, kind, _ = rtnetlink.RTMSG.unpack_from(payload)
    if kind != RTN_UNICAST:
        return []
    attrs = rtnetlink.attribute_map(payload[rtnetlink.RTMSG.size:])
    src = _ip(attrs.get(RTA_PREFSRC))
    dest = _dest(attrs.get(RTA_DST), dst_len)
    priority = struct.unpack("=I", attrs[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in attrs else 0
    if attrs.get(RTA_MULTIPATH):
        routes = []
        data = attrs[RTA_MULTIPATH]
        offset = 0
        while offset + _RTNEXTHOP.size <= len(data):
            length, _, hops, ifindex = _RTNEXTHOP.unpack_from(data, offset)
            if length < _RTNEXTHOP.size or offset + length > len(data):
                raise ValueError("malformed multipath next hop")
            hop = rtnetlink.attribute_map(data[offset + _RTNEXTHOP.size:offset + length])
            routes.append(Route(ifindex, src, dest, _ip(hop.get(RTA_GATEWAY)), priority,
                                protocol, str(hops + 1)))
            offset += (length + 3) & ~3
        return routes
    oif = struct.unpack("=I", attrs[RTA_OIF][:4])[0] if RTA_OIF in attrs else 0
    return [Route(oif, src, dest, _ip(attrs.get(RTA_GATEWAY)), priority, protocol, "")]


def dump_routes() -> list[Route]:
    request = rtnetlink.RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
    routes: list[Route] = []
    for kind, payload in rtnetlink.dump(rtnetlink.RTM_GETROUTE, request):
        if kind == rtnetlink.RTM_NEWROUTE:
            routes += parse_route(payload)
    return routes


def route_families(routes: list[Route], names: dict[int, str]) -> list[Metric]:
    info = GaugeMetricFamily("node_network_route_info", "network routing table information",
                             labels=["device", "src", "dest", "gw", "priority", "proto",
                                     "weight"])
    per_device: Counter[str] = Counter()
    seen = set()
    for route in routes:
        device = names.get(route.ifindex, "")
        labels = (device, route.src, route.dest, route.gateway, str(route.priority),
                  PROTOCOLS.get(route.protocol, "unknown"), route.weight)
        per_device[device] += 1
        if labels not in seen:  # the Go client would refuse a repeated series
            seen.add(labels)
            info.add_metric(list(labels), 1.0)
    count = GaugeMetricFamily("node_network_routes", "network routes by interface",
                              labels=["device"])
    for device, total in sorted(per_device.items()):
        count.add_metric([device], float(total))
    return [family for family in (info, count) if family.samples]


class NetworkRouteCollector:
    def collect(self) -> list[Metric]:
        return route_families(dump_routes(), rtnetlink.link_names())


def create(context: Context, settings: Any) -> NetworkRouteCollector:
    return NetworkRouteCollector()
