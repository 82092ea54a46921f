from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.netdev import NETLINK_STATS, NetdevCollector, parse_net_dev
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
    # node_exporter's netlink counters, renamed as /proc/net/dev's (but not summed as there).
    assert eth0 == {
        "receive_packets": value["rx_packets"], "transmit_packets": value["tx_packets"],
        "receive_bytes": value["rx_bytes"], "transmit_bytes": value["tx_bytes"],
        "receive_errs": value["rx_errors"], "transmit_errs": value["tx_errors"],
        "receive_drop": value["rx_dropped"], "transmit_drop": value["tx_dropped"],
        "receive_multicast": value["multicast"], "transmit_colls": value["collisions"],
        "receive_frame": value["rx_frame_errors"], "receive_fifo": value["rx_fifo_errors"],
        "transmit_carrier": value["tx_carrier_errors"], "transmit_fifo": value["tx_fifo_errors"],
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
