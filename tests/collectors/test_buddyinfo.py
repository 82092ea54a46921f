from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collectors.buddyinfo import BuddyinfoCollector, parse_buddyinfo
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

BUDDY = FIXTURES / "buddyinfo"


def test_matches_node_exporter_e2e_output() -> None:
    families = BuddyinfoCollector(BUDDY / "proc").collect()
    assert_node_exporter(families, BUDDY / "node_exporter.prom")
    assert_golden(families, "buddyinfo")


def numa_gap_tree(tmp_path: Path) -> Path:
    (tmp_path / "proc").mkdir()
    shutil.copy(BUDDY / "proc/buddyinfo_numa_gap", tmp_path / "proc/buddyinfo")
    return tmp_path / "proc"


def test_numa_nodes_with_a_gap(tmp_path: Path) -> None:
    families = BuddyinfoCollector(numa_gap_tree(tmp_path)).collect()
    found = {tuple(s.labels[k] for k in ("node", "zone", "size")): s.value
             for f in families for s in f.samples}
    assert {(n, z) for n, z, _ in found} == {
        ("0", "DMA"), ("0", "DMA32"), ("0", "Normal"), ("2", "Normal")}
    assert found[("2", "Normal", "10")] == 3902


def test_bucket_count_mismatch_and_short_line() -> None:
    with pytest.raises(ValueError, match="mismatch"):
        parse_buddyinfo("Node 0, zone DMA 1 2 3\nNode 0, zone DMA32 1 2\n")
    with pytest.raises(ValueError, match="number of fields"):
        parse_buddyinfo("Node 0, zone\n")


def test_no_buddyinfo_is_no_data(tmp_path: Path) -> None:
    assert BuddyinfoCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    proc = numa_gap_tree(tmp_path)
    assert_matches_peer(node_exporter, "buddyinfo", [f"--path.procfs={proc}"],
                        BuddyinfoCollector(proc).collect(), "node_buddyinfo_")
