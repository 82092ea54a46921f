from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.lnstat import LnstatCollector, parse_table
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

LNSTAT = FIXTURES / "lnstat"


def test_matches_node_exporter_e2e_output() -> None:
    families = LnstatCollector(LNSTAT / "proc").collect()
    assert_node_exporter(families, LNSTAT / "node_exporter.prom")
    assert_golden(families, "lnstat")


def test_hexadecimal_values_and_errors() -> None:
    assert parse_table("entries hits\n0000000a 000000ff\n00000001 00000002\n") == {
        "entries": [10, 1], "hits": [255, 2]}
    with pytest.raises(ValueError, match="more values"):
        parse_table("entries\n00000001 00000002\n")
    with pytest.raises(ValueError, match="hexadecimal"):
        parse_table("entries\nxyz\n")


def test_no_stat_directory_is_no_data(tmp_path: Path) -> None:
    assert LnstatCollector(tmp_path).collect() == []


def test_live_host_reads_without_error() -> None:
    families = LnstatCollector(Path("/proc")).collect()
    assert any(s.labels["subsystem"] == "arp_cache" for f in families for s in f.samples)


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "lnstat", [f"--path.procfs={LNSTAT / 'proc'}"],
                        LnstatCollector(LNSTAT / "proc").collect(), "node_lnstat_")
