from __future__ import annotations

import struct

import pytest

from agent.collectors.qdisc import (
    RTM_NEWQDISC,
    TC_H_ROOT,
    QdiscCollector,
    dump_qdiscs,
    parse_dump,
)
from agent.collectors.rtnetlink import NLMSG_DONE, NLMSG_ERROR
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

QDISC = FIXTURES / "qdisc"


def attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 2, 1, 0) + payload


def qdisc_payload(ifindex: int, parent: int, kind: bytes, stats2: bool) -> bytes:
    tcmsg = struct.pack("=BBHiIII", 0, 0, 0, ifindex, 0, parent, 1)
    attrs = attr(1, kind + b"\0")
    if stats2:
        attrs += attr(7, attr(1, struct.pack("=QI", 1 << 33, 17))
                      + attr(3, struct.pack("=5I", 3, 4, 5, 6, 7)))
    # legacy tc_stats after TCA_STATS2, as the kernel sends it: no requeues there
    attrs += attr(3, struct.pack("=QIIIIIII", 1 << 33, 17, 5, 7, 0, 0, 3, 4))
    return tcmsg + attrs


def test_matches_node_exporter_e2e_output() -> None:
    families = QdiscCollector(fixtures=QDISC / "fixtures").collect()
    assert_node_exporter(families, QDISC / "node_exporter.prom")
    assert_golden(families, "qdisc")


def test_netlink_dump_parsing() -> None:
    dump = (message(RTM_NEWQDISC, qdisc_payload(2, TC_H_ROOT, b"fq_codel", True))
            + message(RTM_NEWQDISC, qdisc_payload(2, 0x10001, b"fq", True))
            + message(RTM_NEWQDISC, qdisc_payload(3, TC_H_ROOT, b"pfifo", False)))
    qdiscs, done = parse_dump([dump, message(NLMSG_DONE, b"\0" * 4)])
    assert done and [(q.ifindex, q.parent, q.kind) for q in qdiscs] == [
        (2, 0, "fq_codel"), (2, 0x10001, "fq"), (3, 0, "pfifo")]
    root = qdiscs[0]
    assert (root.bytes, root.packets, root.qlen, root.backlog, root.drops, root.requeues,
            root.overlimits) == (1 << 33, 17, 3, 4, 5, 6, 7)
    assert qdiscs[2].requeues == 0 and qdiscs[2].drops == 5


def test_netlink_error_is_raised() -> None:
    with pytest.raises(OSError, match="RTM_GETQDISC"):
        parse_dump([message(NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16)])


def test_device_filter() -> None:
    families = QdiscCollector("^eth", None, QDISC / "fixtures").collect()
    assert {s.labels["device"] for f in families for s in f.samples} == {"eth0"}


def test_live_dump_has_the_loopback_root_qdisc() -> None:
    assert any(q.iface == "lo" and q.parent == 0 for q in dump_qdiscs())


def test_matches_node_exporter_on_its_fixtures(node_exporter) -> None:
    assert_matches_peer(node_exporter, "qdisc",
                        [f"--collector.qdisc.fixtures={QDISC / 'fixtures'}"],
                        QdiscCollector(fixtures=QDISC / "fixtures").collect(), "node_qdisc_")
