"""qdisc: node_qdisc_*{device,kind} for each interface's root queueing discipline, as
node_exporter's qdisc collector (off by default). The statistics come from an RTM_GETQDISC
dump over rtnetlink, made with the standard library's AF_NETLINK socket, and are read as
node_exporter's qdisc library reads them: TCA_STATS2 (basic and queue statistics) and the
legacy TCA_STATS, in the order the kernel sends them; requeues only from TCA_STATS2.
--collector.qdisc.fixtures reads a results.json instead, as node_exporter's end-to-end tests."""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors import rtnetlink
from agent.collectors.common import DeviceFilter, go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

RTM_NEWQDISC, RTM_GETQDISC = 36, 38
TCA_KIND, TCA_STATS, TCA_STATS2 = 1, 3, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE = 1, 3
TC_H_ROOT = 0xFFFFFFFF
_TCMSG = struct.Struct("=BBHiIII")  # tcmsg, 20 bytes


@dataclass
class Qdisc:
    ifindex: int = 0
    iface: str = ""
    parent: int = 0
    kind: str = ""
    bytes: int = 0
    packets: int = 0
    drops: int = 0
    requeues: int = 0
    overlimits: int = 0
    qlen: int = 0
    backlog: int = 0


def parse_qdisc_message(payload: bytes) -> Qdisc:
    """One RTM_NEWQDISC payload: tcmsg, then attributes."""
    if len(payload) < _TCMSG.size:
        raise ValueError(f"short qdisc message, len={len(payload)}")
    _, _, _, ifindex, _, parent, _ = _TCMSG.unpack_from(payload)
    qdisc = Qdisc(ifindex=ifindex, parent=0 if parent == TC_H_ROOT else parent)
    for kind, data in rtnetlink.attributes(payload[_TCMSG.size:]):
        if kind == TCA_KIND:
            qdisc.kind = rtnetlink.c_string(data)
        elif kind == TCA_STATS2:
            basic = queue = b""
            for nested_kind, nested in rtnetlink.attributes(data):
                if nested_kind == TCA_STATS_BASIC:
                    basic = nested
                elif nested_kind == TCA_STATS_QUEUE:
                    queue = nested
            qdisc.bytes, qdisc.packets = struct.unpack_from("=QI", basic.ljust(12, b"\0"))
            (qdisc.qlen, qdisc.backlog, qdisc.drops, qdisc.requeues,
             qdisc.overlimits) = struct.unpack_from("=5I", queue.ljust(20, b"\0"))
        elif kind == TCA_STATS:
            (qdisc.bytes, qdisc.packets, qdisc.drops, qdisc.overlimits, _, _, qdisc.qlen,
             qdisc.backlog) = struct.unpack_from("=QIIIIIII", data.ljust(36, b"\0"))
    return qdisc


def parse_dump(chunks: list[bytes]) -> tuple[list[Qdisc], bool]:
    """Qdiscs in the received datagrams, and whether the dump's NLMSG_DONE was seen."""
    qdiscs: list[Qdisc] = []
    try:
        for chunk in chunks:
            for kind, payload in rtnetlink.messages(chunk):
                if kind == rtnetlink.NLMSG_DONE:
                    return qdiscs, True
                if kind == RTM_NEWQDISC:
                    qdiscs.append(parse_qdisc_message(payload))
    except OSError as exc:
        raise OSError(exc.errno, f"RTM_GETQDISC: {exc.strerror}") from None
    return qdiscs, False


def dump_qdiscs() -> list[Qdisc]:
    try:
        replies = rtnetlink.dump(RTM_GETQDISC, _TCMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0))
    except OSError as exc:
        raise OSError(exc.errno, f"RTM_GETQDISC: {exc.strerror or exc}") from None
    qdiscs = [parse_qdisc_message(payload) for kind, payload in replies
              if kind == RTM_NEWQDISC]
    for qdisc in qdiscs:
        try:
            qdisc.iface = socket.if_indextoname(qdisc.ifindex)
        except OSError:
            qdisc.iface = ""  # the interface went away during the dump
    return qdiscs


def load_fixtures(directory: Path) -> list[Qdisc]:
    """node_exporter's results.json: qdisc library records, field names as in Go."""
    records = json.loads((directory / "results.json").read_text())
    return [Qdisc(iface=r.get("IfaceName", ""), parent=r.get("Parent", 0),
                  kind=r.get("Kind", ""), bytes=r.get("Bytes", 0), packets=r.get("Packets", 0),
                  drops=r.get("Drops", 0), requeues=r.get("Requeues", 0),
                  overlimits=r.get("Overlimits", 0), qlen=r.get("Qlen", 0),
                  backlog=r.get("Backlog", 0)) for r in records]


def qdisc_families(qdiscs: list[Qdisc], device_filter: DeviceFilter) -> list[Metric]:
    labels = ["device", "kind"]
    counters = {
        "bytes": CounterMetricFamily("node_qdisc_bytes", "Number of bytes sent.", labels=labels),
        "packets": CounterMetricFamily("node_qdisc_packets", "Number of packets sent.",
                                       labels=labels),
        "drops": CounterMetricFamily("node_qdisc_drops", "Number of packets dropped.",
                                     labels=labels),
        "requeues": CounterMetricFamily(
            "node_qdisc_requeues", "Number of packets dequeued, not transmitted, and requeued.",
            labels=labels),
        "overlimits": CounterMetricFamily("node_qdisc_overlimits",
                                          "Number of overlimit packets.", labels=labels),
    }
    qlen = GaugeMetricFamily("node_qdisc_current_queue_length",
                             "Number of packets currently in queue to be sent.", labels=labels)
    backlog = GaugeMetricFamily("node_qdisc_backlog",
                                "Number of bytes currently in queue to be sent.", labels=labels)
    seen = set()
    for qdisc in qdiscs:
        # Only root qdiscs, as node_exporter; a repeated device and kind is kept once.
        key = (qdisc.iface, qdisc.kind)
        if qdisc.parent != 0 or device_filter.ignored(qdisc.iface) or key in seen:
            continue
        seen.add(key)
        for field, family in counters.items():
            family.add_metric(list(key), float(getattr(qdisc, field)))
        qlen.add_metric(list(key), float(qdisc.qlen))
        backlog.add_metric(list(key), float(qdisc.backlog))
    return go_order([*counters.values(), qlen, backlog])


class QdiscCollector:
    def __init__(self, device_include: str | None = None, device_exclude: str | None = None,
                 fixtures: Path | None = None) -> None:
        self._filter = DeviceFilter(device_include, device_exclude)
        self._fixtures = fixtures

    def collect(self) -> list[Metric]:
        qdiscs = load_fixtures(self._fixtures) if self._fixtures else dump_qdiscs()
        return qdisc_families(qdiscs, self._filter)


def create(context: Context, settings: Any) -> QdiscCollector:
    return QdiscCollector(settings.device_include, settings.device_exclude,
                          Path(settings.fixtures) if settings.fixtures else None)
