from __future__ import annotations

from pathlib import Path

from agent.collectors.watchdog import WatchdogCollector
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "watchdog" / "sys"


def test_golden() -> None:
    families = WatchdogCollector(SYS).collect()
    by_name = {f.name: {s.labels["name"]: s for s in f.samples} for f in families}
    assert by_name["node_watchdog_timeout_seconds"]["watchdog1"].value == 30
    assert "watchdog1" not in by_name["node_watchdog_bootstatus"]
    info = by_name["node_watchdog_info"]
    assert info["watchdog0"].labels["options"] == "0x8380"
    assert info["watchdog1"].labels["status"] == ""  # not provided by the driver
    assert_golden(families, "watchdog")


def test_no_watchdog_class_is_no_data(tmp_path: Path) -> None:
    assert WatchdogCollector(tmp_path).collect() == []
