from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.conntrack import ConntrackCollector, parse_conntrack_stat
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "conntrack" / "proc"
STAT = "net/stat/nf_conntrack"
COUNT = "sys/net/netfilter/nf_conntrack_count"
MAX = "sys/net/netfilter/nf_conntrack_max"
STAT_NAMES = ["found", "invalid", "ignore", "insert", "insert_failed", "drop", "early_drop",
              "search_restart"]


def values(families: list[Metric]) -> dict[str, float]:
    return {s.name: s.value for f in families for s in f.samples}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(PROC, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_parse_sums_the_per_cpu_lines() -> None:
    assert parse_conntrack_stat((PROC / STAT).read_text()) == {
        "found": 0x1a + 0x5 + 0x100, "invalid": 0x1f4 + 0x10 + 0xa00,
        "ignore": 0xc350 + 0x3a98 + 0xff + 0x10000, "insert": 7, "insert_failed": 3, "drop": 3,
        "early_drop": 5, "search_restart": 0xb + 4 + 1}


def test_parse_rejects_a_short_line() -> None:
    header = (PROC / STAT).read_text().splitlines()[0]
    with pytest.raises(ValueError, match="17 fields"):
        parse_conntrack_stat(header + "\n" + " ".join(["00000000"] * 16) + "\n")


def test_golden() -> None:
    families = ConntrackCollector(PROC).collect()
    assert all(f.type == "gauge" for f in families)
    v = values(families)
    assert v["node_nf_conntrack_entries"] == 1873
    assert v["node_nf_conntrack_entries_limit"] == 262144
    assert v["node_nf_conntrack_stat_found"] == 287
    assert v["node_nf_conntrack_stat_invalid"] == 3076
    assert v["node_nf_conntrack_stat_ignore"] == 130791
    assert v["node_nf_conntrack_stat_search_restart"] == 16
    assert list(v) == ["node_nf_conntrack_entries", "node_nf_conntrack_entries_limit"] + [
        f"node_nf_conntrack_stat_{name}" for name in STAT_NAMES]
    assert_golden(families, "conntrack")


def test_module_not_loaded_reports_nothing(tmp_path: Path) -> None:
    assert ConntrackCollector(tmp_path).collect() == []


def test_without_stat_file_only_the_table_size(tree: Path) -> None:
    (tree / STAT).unlink()
    assert values(ConntrackCollector(tree).collect()) == {
        "node_nf_conntrack_entries": 1873, "node_nf_conntrack_entries_limit": 262144}


def test_reading_stops_at_the_first_missing_file(tree: Path) -> None:
    (tree / MAX).unlink()
    assert values(ConntrackCollector(tree).collect()) == {"node_nf_conntrack_entries": 1873}
    (tree / COUNT).unlink()
    assert ConntrackCollector(tree).collect() == []


def test_garbage_fails_the_run(tree: Path) -> None:
    (tree / COUNT).write_text("lots\n")
    with pytest.raises(ValueError):
        ConntrackCollector(tree).collect()
