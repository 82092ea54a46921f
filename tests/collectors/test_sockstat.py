from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.sockstat import SockstatCollector, parse_sockstat, sockstat_families
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "sockstat" / "proc"


def values(families: list[Metric]) -> dict[str, float]:
    return {s.name.removeprefix("node_sockstat_"): s.value for f in families for s in f.samples}


def test_parse_reads_key_value_pairs_per_protocol() -> None:
    stats = parse_sockstat((PROC / "net/sockstat").read_text())
    assert stats["sockets"] == {"used": 1391}
    assert stats["TCP"] == {"inuse": 87, "orphan": 2, "tw": 512, "alloc": 103, "mem": 1539}
    assert stats["FRAG"] == {"inuse": 0, "memory": 0}


@pytest.mark.parametrize("text", ["TCP: inuse\n", "TCP: inuse 1 orphan\n", "TCP: inuse x\n"])
def test_parse_rejects_malformed_lines(text: str) -> None:
    with pytest.raises(ValueError):
        parse_sockstat(text)


def test_golden() -> None:
    families = SockstatCollector(PROC, page_size=4096).collect()
    assert all(f.type == "gauge" for f in families)
    got = values(families)
    assert got["sockets_used"] == 1391
    assert got["TCP_tw"] == 512
    assert got["TCP_mem"] == 1539
    assert got["TCP_mem_bytes"] == 1539 * 4096  # mem is counted in pages
    assert got["UDP_mem_bytes"] == 33 * 4096
    assert got["FRAG6_memory"] == 2816  # 'memory' is already in bytes
    assert got["TCP6_inuse"] == 23
    assert "FRAG_memory_bytes" not in got and "TCP6_mem" not in got
    assert_golden(families, "sockstat")


def test_mem_bytes_follows_the_page_size() -> None:
    got = values(SockstatCollector(PROC, page_size=65536).collect())
    assert got["TCP_mem_bytes"] == 1539 * 65536


def test_help_texts() -> None:
    docs = {f.name: f.documentation for f in SockstatCollector(PROC, page_size=4096).collect()}
    assert docs["node_sockstat_sockets_used"] == "Number of IPv4 sockets in use."
    assert docs["node_sockstat_TCP_mem_bytes"] == "Number of TCP sockets in state mem_bytes."


def test_unknown_keys_are_ignored_and_inuse_is_always_exported() -> None:
    stat = parse_sockstat("sockets: used 3\nTCP: orphan 1 future 9\n")
    got = values(sockstat_families(stat, None, 4096))
    assert got == {"sockets_used": 3, "TCP_inuse": 0, "TCP_orphan": 1}


def test_ipv6_is_optional_and_has_no_sockets_used(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(PROC / "net" / "sockstat", tmp_path / "net" / "sockstat")
    got = values(SockstatCollector(tmp_path, page_size=4096).collect())
    assert not any("6_" in name for name in got)
    assert len(got) == 14
    (tmp_path / "net" / "sockstat6").write_text("sockets: used 8\nTCP6: inuse 1\n")
    got = values(SockstatCollector(tmp_path, page_size=4096).collect())
    assert got["sockets_used"] == 1391 and got["TCP6_inuse"] == 1


def test_no_files_means_no_series(tmp_path: Path) -> None:
    assert SockstatCollector(tmp_path, page_size=4096).collect() == []


def test_page_size_defaults_to_the_system_page_size() -> None:
    got = values(SockstatCollector(PROC).collect())
    assert got["TCP_mem_bytes"] == 1539 * os.sysconf("SC_PAGE_SIZE")
