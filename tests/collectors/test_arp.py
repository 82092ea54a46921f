from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import rtnetlink
from agent.collectors.arp import ArpCollector, count_neighbours, netlink_arp, parse_arp
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "arp" / "proc"
HEADER = "IP address       HW type     Flags       HW address            Mask     Device\n"


def counts(families: list[Metric]) -> dict[str, float]:
    return {s.labels["device"]: s.value for f in families for s in f.samples}


def test_parse_counts_entries_per_device_incomplete_ones_included() -> None:
    assert parse_arp((PROC / "net/arp").read_text()) == {"eth0": 4, "docker0": 2, "virbr0": 1}


def test_parse_rejects_a_malformed_line() -> None:
    with pytest.raises(ValueError, match="arp"):
        parse_arp(HEADER + "10.0.0.1 0x1 0x2 52:54:00:12:35:02 eth0\n")


def test_golden() -> None:
    families = ArpCollector(PROC, None, None, netlink=False).collect()
    assert [(f.name, f.type) for f in families] == [("node_arp_entries", "gauge")]
    assert counts(families) == {"docker0": 2, "eth0": 4, "virbr0": 1}
    assert_golden(families, "arp")


@pytest.mark.parametrize(("include", "exclude", "kept"), [
    ("^eth", None, {"eth0": 4}),
    (None, "^(docker|virbr)", {"eth0": 4}),
    (None, "0$", {}),
    (None, None, {"docker0": 2, "eth0": 4, "virbr0": 1}),
])
def test_filters(include: str | None, exclude: str | None, kept: dict[str, float]) -> None:
    assert counts(ArpCollector(PROC, include, exclude, netlink=False).collect()) == kept


def test_empty_table_reports_nothing(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net/arp").write_text(HEADER)
    assert ArpCollector(tmp_path, None, None, netlink=False).collect() == []


def test_missing_file_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ArpCollector(tmp_path, None, None, netlink=False).collect()


def neighbour(family: int, index: int, state: int) -> tuple[int, bytes]:
    return rtnetlink.RTM_NEWNEIGH, rtnetlink.NDMSG.pack(family, index, state, 0, 1)


def test_netlink_counts_ipv4_entries_without_noarp() -> None:
    reachable, failed, noarp, permanent = 0x02, 0x20, 0x40, 0x80
    assert count_neighbours([
        neighbour(socket.AF_INET, 2, reachable), neighbour(socket.AF_INET, 2, failed),
        neighbour(socket.AF_INET, 3, permanent), neighbour(socket.AF_INET, 1, noarp),
        neighbour(socket.AF_INET6, 2, reachable),
        (rtnetlink.RTM_NEWLINK, b"\0" * 16),
    ]) == {2: 2, 3: 1}


def test_netlink_mode_agrees_with_proc_net_arp_on_this_host() -> None:
    # Both read the kernel's one neighbour table; this host's is quiet between two reads.
    proc = parse_arp(Path("/proc/net/arp").read_text())
    assert netlink_arp() == proc
    assert counts(ArpCollector(PROC, None, None, netlink=True).collect()) == proc


def test_netlink_names_only_the_interfaces_with_neighbours(monkeypatch) -> None:
    """Each interface with neighbours is named by its index alone (no dump of every link
    with its statistics); an index gone since the neighbour dump is left out."""
    messages = [(rtnetlink.RTM_NEWNEIGH, rtnetlink.NDMSG.pack(socket.AF_INET, index, 0x02, 0, 0))
                for index in (1, 1, 999_999)]
    monkeypatch.setattr(rtnetlink, "dump", lambda *args, **kwargs: messages)

    def no_link_dump() -> dict[int, str]:
        raise AssertionError("every link dumped")

    monkeypatch.setattr(rtnetlink, "link_names", no_link_dump)
    assert netlink_arp() == {socket.if_indextoname(1): 2}
