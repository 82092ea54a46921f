from __future__ import annotations

import shutil
from pathlib import Path

from agent.collectors.ksmd import KsmdCollector
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

KSMD = FIXTURES / "ksmd"


def test_matches_node_exporter_e2e_output() -> None:
    families = KsmdCollector(KSMD / "sys").collect()
    assert_node_exporter(families, KSMD / "node_exporter.prom")
    assert_golden(families, "ksmd")


def test_a_kernel_without_numa_has_no_merge_across_nodes(tmp_path: Path) -> None:
    shutil.copytree(KSMD / "sys", tmp_path / "sys")
    (tmp_path / "sys/kernel/mm/ksm/merge_across_nodes").unlink()
    names = {f.name for f in KsmdCollector(tmp_path / "sys").collect()}
    assert "node_ksmd_merge_across_nodes" not in names and len(names) == 8


def test_no_ksm_is_no_data(tmp_path: Path) -> None:
    assert KsmdCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "ksmd", [f"--path.sysfs={KSMD / 'sys'}"],
                        KsmdCollector(KSMD / "sys").collect(), "node_ksmd_")
