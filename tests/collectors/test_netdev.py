from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import rtnetlink
from agent.collectors.netdev import (
    IFLA_STATS64,
    NETLINK_STATS,
    NetdevCollector,
    address_info_families,
    address_scope,
    dump_link_stats,
    legacy_names,
    netdev_families,
    parse_address,
    parse_link_stats,
    parse_net_dev,
    read_link_stats,
)
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "netdev" / "proc"
SYS = FIXTURES / "netdev" / "sys"
DEVICES = ["lo", "eth0", "wlp3s0", "docker0", "veth4a1f2c9"]


def samples(families: list[Metric], name: str) -> dict[str, float]:
    """device label -> value of the sample called name."""
    return {s.labels["device"]: s.value for f in families for s in f.samples if s.name == name}


def test_parse_reads_every_column_with_node_exporter_names() -> None:
    stats = parse_net_dev((PROC / "net/dev").read_text())
    assert list(stats) == DEVICES
    assert list(stats["eth0"]) == [
        "receive_bytes", "receive_packets", "receive_errs", "receive_drop", "receive_fifo",
        "receive_frame", "receive_compressed", "receive_multicast",
        "transmit_bytes", "transmit_packets", "transmit_errs", "transmit_drop", "transmit_fifo",
        "transmit_colls", "transmit_carrier", "transmit_compressed"]
    eth0 = stats["eth0"]
    assert eth0["receive_bytes"] == 9836721475363  # beyond 32 bits
    assert eth0["receive_packets"] == 7321598441
    assert (eth0["receive_errs"], eth0["receive_drop"], eth0["receive_fifo"]) == (12, 340, 3)
    assert (eth0["receive_frame"], eth0["receive_multicast"]) == (7, 184203)
    assert (eth0["transmit_bytes"], eth0["transmit_drop"]) == (1287713394012, 5)
    assert eth0["transmit_carrier"] == 2
    # A name longer than the 6-character column is glued to the colon.
    assert stats["veth4a1f2c9"]["transmit_bytes"] == 4297418


def test_parse_rejects_a_bad_header_and_short_lines() -> None:
    with pytest.raises(ValueError, match="header"):
        parse_net_dev("Inter-|\n face\n")
    header = "\n".join((PROC / "net/dev").read_text().splitlines()[:2])
    with pytest.raises(ValueError, match="line"):
        parse_net_dev(header + "\n  eth0: 1 2 3\n")


def test_golden() -> None:
    families = NetdevCollector(PROC, None, None, sysfs=SYS, netlink=False).collect()
    assert all(f.type == "counter" for f in families)
    assert samples(families, "node_network_receive_bytes_total")["eth0"] == 9836721475363
    assert samples(families, "node_network_transmit_colls_total")["wlp3s0"] == 0
    assert samples(families, "node_network_receive_drop_total")["wlp3s0"] == 1185
    assert_golden(families, "netdev")


def test_proc_net_dev_mode_has_no_nohandler() -> None:
    families = NetdevCollector(PROC, None, None, sysfs=SYS, netlink=False).collect()
    assert "node_network_receive_nohandler" not in {f.name for f in families}
    # Without a sysfs tree the netlink mode falls back to /proc/net/dev.
    assert len(NetdevCollector(PROC, None, None).collect()) == 16


def link_stats_tree(root: Path) -> Path:
    """A sysfs class/net tree whose counters all differ: eth0 has every file, lo lacks
    rx_nohandler (read as 0), and bond_nostats has no statistics directory."""
    for device, base in (("eth0", 100), ("lo", 500)):
        statistics = root / "class/net" / device / "statistics"
        statistics.mkdir(parents=True)
        for offset, filename in enumerate(NETLINK_STATS):
            if device == "lo" and filename == "rx_nohandler":
                continue
            (statistics / filename).write_text(f"{base + offset}\n")
    (root / "class/net/bond_nostats").mkdir()
    return root


def test_netlink_mode_folds_into_proc_names(tmp_path: Path) -> None:
    sysfs = link_stats_tree(tmp_path)
    families = NetdevCollector(tmp_path / "absent", None, None, sysfs=sysfs).collect()
    value = {name: i + 100 for i, name in enumerate(NETLINK_STATS)}
    eth0 = {f.name.removeprefix("node_network_"): s.value
            for f in families for s in f.samples if s.labels["device"] == "eth0"}
    # node_exporter's netlink counters, renamed and summed as /proc/net/dev's.
    assert eth0 == {
        "receive_packets": value["rx_packets"], "transmit_packets": value["tx_packets"],
        "receive_bytes": value["rx_bytes"], "transmit_bytes": value["tx_bytes"],
        "receive_errs": value["rx_errors"], "transmit_errs": value["tx_errors"],
        "receive_drop": value["rx_dropped"] + value["rx_missed_errors"],
        "transmit_drop": value["tx_dropped"],
        "receive_multicast": value["multicast"], "transmit_colls": value["collisions"],
        "receive_frame": value["rx_frame_errors"] + value["rx_length_errors"]
        + value["rx_over_errors"] + value["rx_crc_errors"],
        "receive_fifo": value["rx_fifo_errors"],
        "transmit_carrier": value["tx_carrier_errors"] + value["tx_aborted_errors"]
        + value["tx_heartbeat_errors"] + value["tx_window_errors"],
        "transmit_fifo": value["tx_fifo_errors"],
        "receive_compressed": value["rx_compressed"],
        "transmit_compressed": value["tx_compressed"],
        "receive_nohandler": value["rx_nohandler"]}
    assert samples(families, "node_network_receive_nohandler_total") == {"eth0": 123, "lo": 0}
    assert_golden(families, "netdev_netlink")


def test_detailed_metrics_keep_the_kernel_counters(tmp_path: Path) -> None:
    sysfs = link_stats_tree(tmp_path)
    families = NetdevCollector(tmp_path, None, None, sysfs=sysfs, detailed=True).collect()
    names = {f.name.removeprefix("node_network_") for f in families}
    assert names == set(NETLINK_STATS.values())
    assert samples(families, "node_network_receive_missed_errors_total") == {
        "eth0": 115, "lo": 515}
    assert samples(families, "node_network_receive_bytes_total") == {"eth0": 102, "lo": 502}
    filtered = NetdevCollector(tmp_path, "^lo$", None, sysfs=sysfs, detailed=True).collect()
    assert {s.labels["device"] for f in filtered for s in f.samples} == {"lo"}


def test_every_device_by_default() -> None:
    families = NetdevCollector(PROC, None, None).collect()
    assert list(samples(families, "node_network_receive_bytes_total")) == DEVICES
    assert len(families) == 16


@pytest.mark.parametrize(("include", "exclude", "kept"), [
    ("^(eth|wlp)", None, ["eth0", "wlp3s0"]),
    (None, "^(lo|veth)", ["eth0", "wlp3s0", "docker0"]),
    # Unanchored, as in node_exporter: 'eth' also matches inside 'veth4a1f2c9'.
    (None, "eth", ["lo", "wlp3s0", "docker0"]),
    ("", "", DEVICES),
])
def test_filters(include: str | None, exclude: str | None, kept: list[str]) -> None:
    families = NetdevCollector(PROC, include, exclude).collect()
    assert len(families) == 16
    for family in families:
        assert [s.labels["device"] for s in family.samples] == kept


def test_filter_can_leave_nothing() -> None:
    assert NetdevCollector(PROC, "^nothing$", None).collect() == []


def test_legacy_folding_sums_only_when_the_base_counter_is_there() -> None:
    assert legacy_names({"receive_dropped": 1, "receive_missed_errors": 2}) == {
        "receive_drop": 3}
    # No transmit_carrier_errors: the addends keep their own names, as node_exporter's pop.
    assert legacy_names({"transmit_aborted_errors": 4}) == {"transmit_aborted_errors": 4}


def test_detailed_metrics_in_proc_mode_use_procfs_names() -> None:
    families = NetdevCollector(PROC, None, None, netlink=False, detailed=True).collect()
    names = {f.name.removeprefix("node_network_") for f in families}
    assert {"receive_errors", "receive_dropped", "transmit_errors", "transmit_dropped",
            "receive_frame", "transmit_colls"} <= names
    assert not names & {"receive_errs", "receive_drop", "transmit_errs", "transmit_drop"}


def test_label_ifalias(tmp_path: Path) -> None:
    sysfs = link_stats_tree(tmp_path)
    (sysfs / "class/net/eth0/ifalias").write_text("uplink to core\n")
    (sysfs / "class/net/bonding_masters").write_text("bond0\n")
    families = NetdevCollector(tmp_path, None, None, sysfs=sysfs,
                               label_ifalias=True).collect()
    labels = {tuple(sorted(s.labels.items())) for f in families for s in f.samples
              if f.name == "node_network_receive_bytes"}
    assert labels == {(("device", "eth0"), ("ifalias", "uplink to core")),
                      (("device", "lo"), ("ifalias", ""))}


def test_address_message_parsing() -> None:
    def message(family: int, prefix: int, index: int, *attrs: tuple[int, bytes]) -> bytes:
        body = b"".join(struct.pack("=HH", 4 + len(v), k) + v.ljust((len(v) + 3) & ~3, b"\0")
                        for k, v in attrs)
        return struct.pack("=BBBBI", family, prefix, 0, 0, index) + body

    v4 = socket.inet_pton(socket.AF_INET, "192.0.2.7")
    peer = socket.inet_pton(socket.AF_INET, "192.0.2.1")
    assert parse_address(message(socket.AF_INET, 24, 3, (1, v4), (2, v4))) == (3, 24, v4)
    # Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL the interface's own address.
    assert parse_address(message(socket.AF_INET, 32, 5, (1, peer), (2, v4))) == (5, 32, v4)
    v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    assert parse_address(message(socket.AF_INET6, 64, 2, (1, v6))) == (2, 64, v6)
    assert parse_address(message(socket.AF_PACKET, 0, 2, (1, b"x"))) is None


@pytest.mark.parametrize(("address", "scope"), [
    ("127.0.0.1", "link-local"), ("::1", "link-local"), ("fe80::1", "link-local"),
    ("169.254.3.4", "link-local"), ("224.0.0.251", "link-local"), ("ff02::fb", "link-local"),
    ("ff01::1", "interface-local"), ("10.1.2.3", "global"), ("2001:db8::1", "global"),
    ("224.1.0.5", ""), ("255.255.255.255", ""), ("0.0.0.0", ""),
])
def test_address_scope_as_go_classifies(address: str, scope: str) -> None:
    assert address_scope(address) == scope


def test_address_info_golden() -> None:
    families = address_info_families([
        ("lo", "127.0.0.1", 8), ("lo", "::1", 128), ("eth0", "192.0.2.7", 24),
        ("eth0", "fe80::fc:ff:fe00:1", 64), ("eth0", "2001:db8::7", 64)])
    assert_golden(families, "netdev_address_info")


def test_address_info_live_has_loopback() -> None:
    families = NetdevCollector(PROC, "^$", None, address_info=True).collect()
    info = [s.labels for f in families if f.name == "node_network_address_info"
            for s in f.samples]
    assert {"device": "lo", "address": "127.0.0.1", "netmask": "8",
            "scope": "link-local"} in info


def test_link_message_parsing() -> None:
    def link(name: bytes, stats: tuple[int, ...] | None) -> tuple[int, bytes]:
        attrs = [(3, name + b"\0")] + ([(23, struct.pack(f"={len(stats)}Q", *stats))]
                                       if stats is not None else [])
        body = b"".join(struct.pack("=HH", 4 + len(v), k) + v.ljust((len(v) + 3) & ~3, b"\0")
                        for k, v in attrs)
        return 16, struct.pack("=BxHiII", 0, 1, 2, 0, 0) + body

    newer_kernel = tuple(range(1, len(NETLINK_STATS) + 2))  # one field more: ignored
    stats = parse_link_stats([link(b"eth0", newer_kernel), link(b"nostats", None),
                              link(b"short", (1, 2))])
    assert list(stats) == ["eth0"]
    assert stats["eth0"]["receive_packets"] == 1 and stats["eth0"]["transmit_bytes"] == 4
    assert stats["eth0"]["receive_nohandler"] == len(NETLINK_STATS)


def test_the_hosts_interfaces_over_netlink_match_their_sysfs_counters() -> None:
    sysfs = {dev: read_link_stats(f"/sys/class/net/{dev}/statistics")
             for dev in os.listdir("/sys/class/net")}
    netlink = dump_link_stats()
    assert set(netlink) == set(sysfs)
    for device, counters in netlink.items():
        # Read just after sysfs: a counter can only have grown since.
        assert all(counters[name] >= value for name, value in (sysfs[device] or {}).items())
    collector = NetdevCollector(PROC, None, None, sysfs=Path("/sys"))
    assert set(samples(collector.collect(), "node_network_receive_bytes_total")) == set(netlink)


class ScriptedLinks:
    """Stands in for the collector's netlink socket: answers the RTM_GETLINK dump with the
    links set here (the kernel's counters cannot be set by a test)."""

    def __init__(self) -> None:
        self.links: dict[bytes, tuple[int, ...]] = {}

    def dump(self, request_type: int, request: bytes) -> list[tuple[int, bytes]]:
        assert request_type == rtnetlink.RTM_GETLINK
        replies = []
        for name, stats in self.links.items():
            body = (rtnetlink.encode_attribute(rtnetlink.IFLA_IFNAME, name + b"\0")
                    + rtnetlink.encode_attribute(IFLA_STATS64,
                                                 struct.pack(f"={len(stats)}Q", *stats)))
            replies.append((rtnetlink.RTM_NEWLINK, rtnetlink.IFINFOMSG.pack(0, 1, 2, 0, 0) + body))
        return replies

    def close(self) -> None:
        pass


def expected(links: ScriptedLinks, detailed: bool, ignored: str | None) -> list[Metric]:
    stats = parse_link_stats(links.dump(rtnetlink.RTM_GETLINK, b""))
    return netdev_families({dev: counters if detailed else legacy_names(counters)
                            for dev, counters in sorted(stats.items())
                            if ignored is None or dev != ignored})


@pytest.mark.parametrize("detailed", [False, True])
def test_host_families_are_handed_out_again_only_while_unchanged(detailed: bool) -> None:
    links = ScriptedLinks()
    collector = NetdevCollector(PROC, None, "^veth", sysfs=Path("/sys"), detailed=detailed)
    collector._socket = links  # type: ignore[assignment]
    base = tuple(range(1, len(NETLINK_STATS) + 1))
    links.links = {b"lo": base, b"eth0": tuple(10 * v for v in base), b"veth1": base}
    first = collector.collect()
    assert first == expected(links, detailed, "veth1")
    # Nothing changed: the same family objects.
    again = collector.collect()
    assert [id(f) for f in again] == [id(f) for f in first]
    # One counter of one device: its family alone is built again, with the new value.
    links.links[b"eth0"] = (base[0] * 10 + 5, *links.links[b"eth0"][1:])
    changed = collector.collect()
    assert changed == expected(links, detailed, "veth1")
    assert [f.name for f, g in zip(changed, first, strict=True) if f is not g] == [
        "node_network_receive_packets"]
    # A folded addend (rx_missed_errors) changes the folded family's value.
    missed = list(NETLINK_STATS).index("rx_missed_errors")
    links.links[b"lo"] = (*base[:missed], 1000, *base[missed + 1:])
    assert collector.collect() == expected(links, detailed, "veth1")
    # A filtered-out device's counters, a device more, one gone.
    links.links[b"veth1"] = tuple(v + 1 for v in base)
    assert collector.collect() == expected(links, detailed, "veth1")
    links.links[b"eth1"] = base
    assert collector.collect() == expected(links, detailed, "veth1")
    del links.links[b"eth0"]
    assert collector.collect() == expected(links, detailed, "veth1")
    links.links = {}
    assert collector.collect() == []
    links.links = {b"lo": base}
    assert collector.collect() == expected(links, detailed, "veth1")
