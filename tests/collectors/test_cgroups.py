from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.cgroups import CgroupsCollector, parse_cgroups
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

CGROUPS = FIXTURES / "cgroups"


def test_matches_node_exporter_e2e_output() -> None:
    families = CgroupsCollector(CGROUPS / "proc").collect()
    assert_node_exporter(families, CGROUPS / "node_exporter.prom")
    assert_golden(families, "cgroups")


def test_short_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="4\\+ fields"):
        parse_cgroups("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t2\n")


def test_no_cgroups_file_is_no_data(tmp_path: Path) -> None:
    assert CgroupsCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "cgroups", [f"--path.procfs={CGROUPS / 'proc'}"],
                        CgroupsCollector(CGROUPS / "proc").collect(), "node_cgroups_")
