from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.arp import ArpCollector, parse_arp
from tests.golden import FIXTURES, assert_golden

PROC = FIXTURES / "arp" / "proc"
HEADER = "IP address       HW type     Flags       HW address            Mask     Device\n"


def counts(families: list[Metric]) -> dict[str, float]:
    return {s.labels["device"]: s.value for f in families for s in f.samples}


def test_parse_counts_entries_per_device_incomplete_ones_included() -> None:
    assert parse_arp((PROC / "net/arp").read_text()) == {"eth0": 4, "docker0": 2, "virbr0": 1}


def test_parse_rejects_a_malformed_line() -> None:
    with pytest.raises(ValueError, match="arp"):
        parse_arp(HEADER + "10.0.0.1 0x1 0x2 52:54:00:12:35:02 eth0\n")


def test_golden() -> None:
    families = ArpCollector(PROC, None, None).collect()
    assert [(f.name, f.type) for f in families] == [("node_arp_entries", "gauge")]
    assert counts(families) == {"docker0": 2, "eth0": 4, "virbr0": 1}
    assert_golden(families, "arp")


@pytest.mark.parametrize(("include", "exclude", "kept"), [
    ("^eth", None, {"eth0": 4}),
    (None, "^(docker|virbr)", {"eth0": 4}),
    (None, "0$", {}),
    (None, None, {"docker0": 2, "eth0": 4, "virbr0": 1}),
])
def test_filters(include: str | None, exclude: str | None, kept: dict[str, float]) -> None:
    assert counts(ArpCollector(PROC, include, exclude).collect()) == kept


def test_empty_table_reports_nothing(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net/arp").write_text(HEADER)
    assert ArpCollector(tmp_path, None, None).collect() == []


def test_missing_file_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ArpCollector(tmp_path, None, None).collect()
