from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from agent.collectors.meminfo_numa import MeminfoNumaCollector, parse_meminfo, parse_numastat
from agent.exposition.formats import TEXT, encode
from tests.collectors.peer import parse
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

NUMA = FIXTURES / "meminfo_numa"


def test_matches_node_exporter_e2e_output() -> None:
    families = MeminfoNumaCollector(NUMA / "sys").collect()
    assert_node_exporter(families, NUMA / "node_exporter.prom")
    assert_golden(families, "meminfo_numa")


def test_node_directories_with_gaps() -> None:
    families = MeminfoNumaCollector(NUMA / "sys-gaps").collect()
    nodes = {s.labels["node"] for f in families for s in f.samples}
    assert nodes == {"0", "3"}
    hits = {s.labels["node"]: s.value for f in families for s in f.samples
            if s.name == "node_memory_numa_numa_hit_total"}
    assert hits == {"0": 193460335812, "3": 326720946761}


def test_units_and_names() -> None:
    assert parse_meminfo("Node 1 Active(anon):  2 kB\nNode 1 HugePages_Free:  3\n\n") == [
        ("Active_anon_bytes", "1", 2048.0, False), ("HugePages_Free", "1", 3.0, False)]
    assert parse_numastat("numa_hit 5\n", "4") == [("numa_hit_total", "4", 5.0, True)]
    with pytest.raises(ValueError, match="invalid line"):
        parse_meminfo("Node 0 MemFree: 1 MB\n")
    with pytest.raises(ValueError, match="2 fields"):
        parse_numastat("numa_hit 5 6\n", "0")


def test_no_numa_directory_is_no_data(tmp_path: Path) -> None:
    assert MeminfoNumaCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    """node_exporter 1.5 names kB fields without the _bytes suffix the latest release adds;
    everything else (nodes read by their own number, values, counters) is the same."""
    url = node_exporter("--collector.disable-defaults", "--collector.meminfo_numa",
                        f"--path.sysfs={NUMA / 'sys-gaps'}")
    theirs = parse(urllib.request.urlopen(url, timeout=10).read().decode(), "node_memory_numa_")
    mine = parse(encode(MeminfoNumaCollector(NUMA / "sys-gaps").collect(), TEXT).decode(),
                 "node_memory_numa_")
    assert len(theirs) == len(mine) == 2 * 35
    assert {(name.removesuffix("_bytes"), labels): v for (name, labels), v in mine.items()} \
        == theirs
