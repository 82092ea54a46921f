from __future__ import annotations

import socket
import struct
from collections import Counter
from pathlib import Path

from agent.collectors.tcpstat import (
    NLMSG_DONE,
    SOCK_DIAG_BY_FAMILY,
    TcpstatCollector,
    count,
    parse_messages,
    request,
    tcpstat_families,
)
from tests.golden import assert_golden


def diag_message(state: int, rqueue: int, wqueue: int) -> bytes:
    payload = struct.pack("=BBBB48xIIIII", socket.AF_INET, state, 0, 0, 0, rqueue, wqueue, 0, 0)
    return struct.pack("=IHHII", 16 + len(payload), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + payload


def test_request_is_an_inet_diag_dump_of_every_tcp_state() -> None:
    data = request(socket.AF_INET6)
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", data)
    assert (length, kind, flags) == (len(data), SOCK_DIAG_BY_FAMILY, 0x301)
    family, protocol, ext, _, states = struct.unpack_from("=BBBBI", data, 16)
    assert (family, protocol, ext, states) == (socket.AF_INET6, socket.IPPROTO_TCP, 2, 0xFFF)
    assert len(data) == 16 + 56


def test_states_and_queues_are_summed() -> None:
    done = struct.pack("=IHHIIi", 20, NLMSG_DONE, 2, 1, 0, 0)
    datagram = (diag_message(1, 0, 0) + diag_message(1, 12, 340) + diag_message(10, 1, 4096)
                + diag_message(6, 0, 0) + diag_message(99, 0, 0) + done)
    messages = list(parse_messages(datagram))
    assert [kind for kind, _ in messages] == [SOCK_DIAG_BY_FAMILY] * 5 + [NLMSG_DONE]
    stats: Counter[str] = Counter()
    count((payload for kind, payload in messages if kind == SOCK_DIAG_BY_FAMILY), stats)
    assert stats == {"established": 2, "listen": 1, "time_wait": 1, "unknown": 1,
                     "rx_queued_bytes": 13, "tx_queued_bytes": 4436}
    assert_golden(tcpstat_families(stats), "tcpstat")


def test_live_loopback_connection_is_counted() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=17) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        try:
            families = TcpstatCollector(Path("/proc")).collect()
        finally:
            client.close()
            accepted.close()
    found = {s.labels["state"]: s.value for f in families for s in f.samples}
    assert found["established"] >= 2 and found["listen"] >= 1
    # A listening socket's backlog limit counts as its send queue, as the kernel reports it.
    assert found["tx_queued_bytes"] >= 17
