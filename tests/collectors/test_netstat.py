from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.catalog import NetstatSettings
from agent.collectors.netstat import NetstatCollector, parse_netstat, parse_snmp6
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "netstat" / "proc"
DEFAULT_FIELDS = NetstatSettings().fields


def values(families: list[Metric]) -> dict[str, float]:
    return {s.name.removeprefix("node_netstat_"): s.value for f in families for s in f.samples}


def test_parse_pairs_header_and_value_lines() -> None:
    snmp = parse_netstat((PROC / "net/snmp").read_text())
    assert list(snmp) == ["Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"]
    assert snmp["Tcp"]["MaxConn"] == -1
    assert snmp["Tcp"]["ActiveOpens"] == 1933044
    assert snmp["IcmpMsg"] == {"InType3": 17075}
    netstat = parse_netstat((PROC / "net/netstat").read_text())
    assert list(netstat) == ["TcpExt", "IpExt", "MPTcpExt"]
    assert netstat["TcpExt"]["TCPTimeouts"] == 3141


def test_parse_rejects_mismatched_lines() -> None:
    with pytest.raises(ValueError, match="mismatch"):
        parse_netstat("Tcp: InSegs OutSegs\nTcp: 1\n")
    with pytest.raises(ValueError, match="odd"):
        parse_netstat("Tcp: InSegs OutSegs\nTcp: 1 2\nUdp: InDatagrams\n")
    with pytest.raises(ValueError):
        parse_netstat("Tcp: InSegs\nTcp: many\n")


def test_parse_snmp6_splits_the_protocol_after_its_six() -> None:
    snmp6 = parse_snmp6((PROC / "net/snmp6").read_text())
    assert list(snmp6) == ["Ip6", "Icmp6", "Udp6", "UdpLite6"]
    assert snmp6["Ip6"]["InOctets"] == 7340032119
    # Only the first '6' separates: the rest of the name is kept.
    assert "OutType135" in snmp6["Icmp6"]
    assert parse_snmp6("IpInReceives 3\nshort\n") == {}


def test_golden_with_the_default_fields() -> None:
    families = NetstatCollector(PROC, DEFAULT_FIELDS).collect()
    assert all(f.type == "unknown" for f in families)  # untyped, as node_exporter
    got = values(families)
    assert len(got) == 42
    assert got["TcpExt_TCPOFOQueue"] >= 0 and got["TcpExt_TCPRcvQDrop"] >= 0
    assert got["Ip_Forwarding"] == 1
    assert got["Tcp_CurrEstab"] == 42
    assert got["TcpExt_TCPTimeouts"] == 3141
    assert got["Ip6_InOctets"] == 7340032119
    assert got["Udp6_InErrors"] == 1
    # Parsed as a float64, as node_exporter does: 2**54 + 1 rounds to 2**54.
    assert got["IpExt_OutOctets"] == 2**54
    assert "Tcp_MaxConn" not in got and "IcmpMsg_InType3" not in got
    assert_golden(families, "netstat")


def test_help_names_the_kernel_statistic() -> None:
    families = NetstatCollector(PROC, "^Ip6_InOctets$").collect()
    assert [(f.name, f.documentation) for f in families] == [
        ("node_netstat_Ip6_InOctets", "Statistic Ip6InOctets.")]


def test_fields_filter_is_searched_over_protocol_and_field() -> None:
    got = values(NetstatCollector(PROC, "^(Tcp_MaxConn|IcmpMsg_.*)$").collect())
    assert got == {"IcmpMsg_InType3": 17075, "Tcp_MaxConn": -1}
    everything = NetstatCollector(PROC, "").collect()
    assert len(everything) > 300
    assert all(re.fullmatch(r"node_netstat_[A-Za-z0-9]+_[A-Za-z0-9]+", f.name)
               for f in everything)


def test_snmp6_is_optional(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    for name in ("netstat", "snmp"):
        shutil.copy(PROC / "net" / name, tmp_path / "net" / name)
    got = values(NetstatCollector(tmp_path, DEFAULT_FIELDS).collect())
    assert len(got) == 30
    assert not any(key.startswith(("Ip6", "Icmp6", "Udp6", "UdpLite6")) for key in got)


def test_missing_snmp_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(PROC / "net" / "netstat", tmp_path / "net" / "netstat")
    with pytest.raises(FileNotFoundError):
        NetstatCollector(tmp_path, DEFAULT_FIELDS).collect()


def test_every_value_must_parse_wanted_or_not(tmp_path: Path) -> None:
    """Only the wanted fields are converted, but a value that is no number anywhere in the
    files still fails the run (as parsing them all did); a non-integer number still reads."""
    net = tmp_path / "net"
    net.mkdir()
    (net / "netstat").write_text("TcpExt: SyncookiesSent Other\nTcpExt: 1e3 many\n")
    (net / "snmp").write_text("Tcp: CurrEstab\nTcp: 5\n")
    collector = NetstatCollector(tmp_path, DEFAULT_FIELDS)
    with pytest.raises(ValueError, match="many"):
        collector.collect()
    (net / "netstat").write_text("TcpExt: SyncookiesSent Other\nTcpExt: 1e3 -7\n")
    assert values(collector.collect()) == {"TcpExt_SyncookiesSent": 1000, "Tcp_CurrEstab": 5}
    (net / "snmp6").write_text("Ip6InReceives  3\nIp6Forwarding x\nIcmpMsg 12\n")
    with pytest.raises(ValueError, match="'x'"):
        collector.collect()
    (net / "snmp6").write_text("Ip6InReceives  3\nIp6InOctets 2.5\nIcmpMsg x\n")
    assert values(collector.collect())["Ip6_InOctets"] == 2.5


def test_text_other_than_the_kernels_plain_bytes_reads_as_before(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    (net / "netstat").write_text("TcpExt:\tSyncookiesSent\tListenDrops\nTcpExt: 4\t\u00a09\n")
    (net / "snmp").write_text("Tcp: CurrEstab\n\nTcp: 5\n")
    collector = NetstatCollector(tmp_path, DEFAULT_FIELDS)
    expected = {"TcpExt_SyncookiesSent": 4, "TcpExt_ListenDrops": 9, "Tcp_CurrEstab": 5}
    assert values(collector.collect()) == expected
    (net / "netstat").write_text("TcpExt: SyncookiesSent ListenDrops\nTcpExt: 4 10\n")
    assert values(collector.collect()) == {**expected, "TcpExt_ListenDrops": 10}


def test_unchanged_values_give_the_same_families(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    (net / "netstat").write_text("TcpExt: SyncookiesSent ListenDrops\nTcpExt: 4 9\n")
    (net / "snmp").write_text("Tcp: CurrEstab\nTcp: 5\n")
    collector = NetstatCollector(tmp_path, DEFAULT_FIELDS)
    first = collector.collect()
    (net / "netstat").write_text("TcpExt: SyncookiesSent ListenDrops\nTcpExt: 4 10\n")
    second = collector.collect()
    assert [f is g for f, g in zip(first, second, strict=True)] == [False, True, True]
    assert values(second)["TcpExt_ListenDrops"] == 10
