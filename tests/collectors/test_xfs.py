from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.xfs import XfsCollector, parse_stats
from tests.golden import FIXTURES, assert_golden

XFS = FIXTURES / "xfs"


def samples(families: list[Metric], name: str) -> dict[str, float]:
    return {s.labels["device"]: s.value for f in families for s in f.samples if s.name == name}


def test_per_filesystem_stats() -> None:
    families = XfsCollector(XFS / "sys").collect()
    assert len(families) == 39
    # The global stats/stats, the features directory and the malformed sdb1 are not devices.
    assert samples(families, "node_xfs_extent_allocation_blocks_allocated_total") == {
        "dm-0": 97589, "sda1": 872}
    assert samples(families, "node_xfs_read_calls_total") == {"dm-0": 107739, "sda1": 28}
    assert samples(families, "node_xfs_write_calls_total") == {"dm-0": 94045, "sda1": 2}
    assert samples(families, "node_xfs_inode_operation_attribute_changes_total") == {
        "dm-0": 22, "sda1": 6}
    assert samples(families, "node_xfs_vnode_remove_total") == {"dm-0": 92444, "sda1": 4}
    assert samples(families, "node_xfs_directory_operation_getdents_total")["sda1"] == 52
    assert_golden(families, "xfs")


@pytest.mark.parametrize("text", [
    "extent_alloc 1 2 3\n",
    "vnodes 1 2 3 4 5 6\n",
    "qm 1 2 3\n",
    "abt 1 2 3 4294967296\n",  # more than 32 bits
    "rw 1 -2\n",
])
def test_procfs_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="xfs"):
        parse_stats(text)


def test_unknown_lines_and_wide_xpc_are_accepted() -> None:
    stats = parse_stats("rtrmapbt 1 2 3\nxpc 18446744073709551615 0 0\nempty\n")
    assert stats["xpc"][0] == 2**64 - 1


def test_no_xfs_means_no_series(tmp_path: Path) -> None:
    assert XfsCollector(tmp_path).collect() == []
