"""tcpstat: node_tcp_connection_states{state} as node_exporter's tcpstat collector, which asks
the kernel over netlink (sock_diag, INET_DIAG) for every TCP socket: the count per state, and
the receive and send queues summed over all sockets (rx_queued_bytes, tx_queued_bytes). For a
listening socket the kernel reports its accept backlog and backlog limit as the queues, so the
sums include those, as in node_exporter. IPv6 sockets are counted when /proc/net/tcp6 exists.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCPF_ALL = 0xFFF
INET_DIAG_INFO = 2
# include/net/tcp_states.h, in node_exporter's names
STATES = {1: "established", 2: "syn_sent", 3: "syn_recv", 4: "fin_wait1", 5: "fin_wait2",
          6: "time_wait", 7: "close", 8: "close_wait", 9: "last_ack", 10: "listen",
          11: "closing"}
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_REQUEST = struct.Struct("=BBBBI48x")  # struct inet_diag_req_v2 with a zero inet_diag_sockid
_MESSAGE = struct.Struct("=BBBB48xIIIII")  # struct inet_diag_msg


def request(family: int, sequence: int = 1) -> bytes:
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, TCPF_ALL)
    return _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY,
                        NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + body


def parse_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            raise ValueError(f"netlink message of length {length}")
        yield kind, data[offset + _HEADER.size:offset + length]
        offset += (length + 3) & ~3


def count(messages: Iterable[bytes], stats: Counter[str]) -> None:
    """Adds inet_diag_msg payloads to the counts per state and the queue sums."""
    for payload in messages:
        _, state, _, _, _, rqueue, wqueue, _, _ = _MESSAGE.unpack_from(payload)
        stats[STATES.get(state, "unknown")] += 1
        stats["tx_queued_bytes"] += wqueue
        stats["rx_queued_bytes"] += rqueue


def dump(family: int) -> list[bytes]:
    """Every TCP socket of one address family, as inet_diag_msg payloads."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(10)
        sock.sendall(request(family))
        found: list[bytes] = []
        while True:
            for kind, payload in parse_messages(sock.recv(1 << 16)):
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, f"sock_diag: {os.strerror(code)}")
                    continue
                if kind == SOCK_DIAG_BY_FAMILY:
                    found.append(payload)


def tcpstat_families(stats: Counter[str]) -> list[Metric]:
    family = GaugeMetricFamily("node_tcp_connection_states", "Number of connection states.",
                               labels=["state"])
    for state, value in stats.items():
        family.add_metric([state], value)
    return go_order([family])


class TcpstatCollector:
    def __init__(self, procfs: Path) -> None:
        self._tcp6 = procfs / "net" / "tcp6"

    def collect(self) -> list[Metric]:
        stats: Counter[str] = Counter()
        try:
            count(dump(socket.AF_INET), stats)
            if self._tcp6.exists():
                count(dump(socket.AF_INET6), stats)
        except OSError as exc:
            if exc.errno == errno.EPROTONOSUPPORT:
                raise RuntimeError("couldn't get tcpstats: sock_diag is not available") from exc
            raise RuntimeError(f"couldn't get tcpstats: {exc}") from exc
        return tcpstat_families(stats)


def create(context: Context, settings: Any) -> TcpstatCollector:
    return TcpstatCollector(context.procfs)
