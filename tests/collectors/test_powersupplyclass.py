from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import powersupplyclass
from agent.collectors.powersupplyclass import PowerSupplyClassCollector
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "powersupplyclass" / "sys"


def values(families: list[Metric], name: str) -> dict[str, float]:
    return {s.labels["power_supply"]: s.value for f in families for s in f.samples
            if s.name == name}


def test_golden() -> None:
    families = PowerSupplyClassCollector(SYS, "^$").collect()
    assert values(families, "node_power_supply_online") == {
        "AC": 0, "ucsi-source-psy-USBC000:001": 1}
    assert values(families, "node_power_supply_energy_watthour") == {"BAT0": 36.58}
    assert values(families, "node_power_supply_temp_celsius") == {"BAT0": 28.5}
    info = {s.labels["power_supply"]: s.labels for f in families for s in f.samples
            if s.name == "node_power_supply_info"}
    assert info["AC"] == {"power_supply": "AC", "type": "Mains"}
    assert info["BAT0"]["model_name"] == "LNV-45N1\ufffd"  # invalid UTF-8 replaced
    assert info["ucsi-source-psy-USBC000:001"]["scope"] == "Device"
    assert {f.type for f in families} == {"gauge"}
    assert_golden(families, "powersupplyclass")


def test_ignored_supplies() -> None:
    families = PowerSupplyClassCollector(SYS, "^(AC|ucsi)").collect()
    assert set(values(families, "node_power_supply_info")) == {"BAT0"}


def test_unreadable_attribute_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real = powersupplyclass.read_attribute_bytes

    def flaky(path: str | Path, size: int = 128, dir_fd: int | None = None) -> bytes:
        if os.path.basename(path) == "energy_now":
            raise OSError(errno.ENODATA, "No data available")
        return real(path, size, dir_fd)

    monkeypatch.setattr(powersupplyclass, "read_attribute_bytes", flaky)
    families = PowerSupplyClassCollector(SYS, "^$").collect()
    assert values(families, "node_power_supply_energy_watthour") == {}
    assert values(families, "node_power_supply_capacity") == {"BAT0": 81}


def test_no_power_supply_class_is_no_data(tmp_path: Path) -> None:
    assert PowerSupplyClassCollector(tmp_path, "^$").collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "powersupplyclass", [f"--path.sysfs={SYS}"],
                        PowerSupplyClassCollector(SYS, "^$").collect(), "node_power_supply_")
