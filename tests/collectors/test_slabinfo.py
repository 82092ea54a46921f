from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.slabinfo import SlabinfoCollector, parse_slabinfo
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

SLABINFO = FIXTURES / "slabinfo"
PROC = SLABINFO / "proc"


def test_matches_node_exporter_e2e_output() -> None:
    families = SlabinfoCollector(PROC).collect()
    assert_node_exporter(families, SLABINFO / "node_exporter.prom")
    assert_golden(families, "slabinfo")


@pytest.mark.parametrize(("include", "exclude", "slabs"), [
    ("^kmalloc", None, {"kmalloc-8192"}),
    (".*", "^k", {"dmaengine-unmap-128", "tw_sock_TCP"}),
])
def test_slab_filters(include: str, exclude: str | None, slabs: set[str]) -> None:
    families = SlabinfoCollector(PROC, include, exclude).collect()
    assert {s.labels["slab"] for f in families for s in f.samples} == slabs


def test_bad_line() -> None:
    with pytest.raises(ValueError, match="unable to read"):
        parse_slabinfo("slabinfo - version: 2.1\nkmalloc-8 1 2 3\n")


def test_no_slabinfo_is_no_data(tmp_path: Path) -> None:
    assert SlabinfoCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    # node_exporter 1.5 has no slab name filters yet
    assert_matches_peer(node_exporter, "slabinfo", [f"--path.procfs={PROC}"],
                        SlabinfoCollector(PROC).collect(), "node_slabinfo_")
