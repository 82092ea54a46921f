from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.softirqs import SoftirqsCollector, parse_softirqs
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

SOFTIRQS = FIXTURES / "softirqs"


def test_matches_node_exporter_e2e_output() -> None:
    families = SoftirqsCollector(SOFTIRQS / "proc").collect()
    assert [f.type for f in families] == ["counter"]
    assert_node_exporter(families, SOFTIRQS / "node_exporter.prom")
    assert_golden(families, "softirqs")


def test_unknown_vectors_and_short_lines_are_skipped() -> None:
    text = ("    CPU0  CPU1  CPU2\n  HI: 1 2 3\n  NEWVEC: 9 9 9\n  TIMER:\n"
            "  RCU: 4 5 6\n")
    assert parse_softirqs(text) == {"HI": [1, 2, 3], "RCU": [4, 5, 6]}


def test_bad_value_and_empty_file() -> None:
    with pytest.raises(ValueError, match="TIMER1"):
        parse_softirqs("  CPU0 CPU1\n TIMER: 1 x\n")
    with pytest.raises(ValueError, match="empty"):
        parse_softirqs("")


def test_no_softirqs_is_no_data(tmp_path: Path) -> None:
    assert SoftirqsCollector(tmp_path).collect() == []


def test_live_host_reads_without_error() -> None:
    families = SoftirqsCollector(Path("/proc")).collect()
    assert {s.labels["type"] for f in families for s in f.samples} >= {"TIMER", "NET_RX"}
