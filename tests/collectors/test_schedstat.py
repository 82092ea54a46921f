from __future__ import annotations

from pathlib import Path

from agent.collectors.schedstat import SchedstatCollector, parse_schedstat
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "schedstat" / "proc"


def test_parse_takes_the_last_three_fields_of_cpu_lines() -> None:
    text = ("version 15\ntimestamp 1\ncpu3 1 2 3 4 5 6 700 800 9\n"
            "domain0 0f 1 2 3 4 5 6 7 8 9 10\n")
    assert parse_schedstat(text) == [("3", 700, 800, 9)]


def test_golden() -> None:
    families = SchedstatCollector(PROC).collect()
    running = {s.labels["cpu"]: s.value for f in families for s in f.samples
               if s.name == "node_schedstat_running_seconds_total"}
    assert running == {"0": 2045936.778163039, "1": 1904686.152592476}
    assert {f.type for f in families} == {"counter"}
    assert_golden(families, "schedstat")


def test_no_schedstat_is_no_data(tmp_path: Path) -> None:
    assert SchedstatCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "schedstat", [f"--path.procfs={PROC}"],
                        SchedstatCollector(PROC).collect(), "node_schedstat_")
