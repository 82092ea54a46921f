from __future__ import annotations

from pathlib import Path

from agent.collectors.memory import MemoryCollector
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "meminfo" / "proc"


def test_golden_has_node_exporters_fields_only() -> None:
    families = MemoryCollector(PROC).collect()
    got = {f.name: f.samples[0].value for f in families}
    assert got["node_memory_MemTotal_bytes"] == 32752220 * 1024
    assert got["node_memory_Active_anon_bytes"] == 8015892 * 1024
    assert got["node_memory_HugePages_Total"] == 4  # a count, no unit
    assert got["node_memory_Hugepagesize_bytes"] == 2048 * 1024
    # Fields procfs's Meminfo does not know are not exported by the latest node_exporter.
    for absent in ("KReclaimable", "SecPageTables", "FileHugePages", "FilePmdMapped",
                   "Unaccepted", "Hugetlb"):
        assert f"node_memory_{absent}_bytes" not in got
    assert len(got) == 49  # the fixture has no Cma* lines
    assert all(f.type == "gauge" for f in families)
    assert_golden(families, "meminfo")


def test_live_host_reads_without_errors() -> None:
    got = {f.name for f in MemoryCollector(Path("/proc")).collect()}
    assert "node_memory_MemTotal_bytes" in got
