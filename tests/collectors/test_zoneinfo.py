from __future__ import annotations

from pathlib import Path

from agent.collectors.zoneinfo import ZoneinfoCollector, parse_zoneinfo, zoneinfo_families
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

ZONEINFO = FIXTURES / "zoneinfo"

TWO_NODES = """Node 0, zone   Normal
  per-node stats
      nr_inactive_anon 10
  pages free     5
        min      1
        protection: (0, 0)
      nr_free_pages 5
Node 2, zone   Normal
  per-node stats
      nr_inactive_anon 20
  pages free     7
        min      2
        protection: (0, 0)
      nr_free_pages 7
      numa_hit     0x10
"""


def test_matches_node_exporter_e2e_output() -> None:
    families = ZoneinfoCollector(ZONEINFO / "proc").collect()
    assert_node_exporter(families, ZONEINFO / "node_exporter.prom")
    assert_golden(families, "zoneinfo")


def test_numa_nodes_with_a_gap() -> None:
    zones = parse_zoneinfo(TWO_NODES)
    assert [(z.node, z.zone) for z in zones] == [("0", "Normal"), ("2", "Normal")]
    assert zones[1].values == {"nr_inactive_anon": 20, "min": 2, "nr_free_pages": 7,
                               "numa_hit": 16}
    names = {f.name for f in zoneinfo_families(zones)}
    assert "node_zoneinfo_protection_1" in names


def test_no_zoneinfo_is_no_data(tmp_path: Path) -> None:
    assert ZoneinfoCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "zoneinfo", [f"--path.procfs={ZONEINFO / 'proc'}"],
                        ZoneinfoCollector(ZONEINFO / "proc").collect(), "node_zoneinfo_")
