from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client.metrics_core import Metric

from agent.collectors.thermal_zone import ThermalZoneCollector
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "thermal_zone" / "sys"
PREFIXES = ("node_thermal_zone_", "node_cooling_device_")


def values(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for f in families for s in f.samples
            if s.name == name}


def test_golden() -> None:
    families = ThermalZoneCollector(SYS).collect()
    # a negative temperature is kept; a disabled zone and one without temp are left out
    assert values(families, "node_thermal_zone_temp") == {
        ("0", "cpu-thermal"): 12.376, ("1", "acpitz"): -5.0}
    assert values(families, "node_cooling_device_cur_state") == {
        ("0", "Processor"): 0, ("1", "intel_powerclamp"): -1, ("2", "Fan"): 0}
    assert values(families, "node_cooling_device_max_state")[("2", "Fan")] == 0
    assert_golden(families, "thermal_zone")


def test_no_thermal_class_is_no_data(tmp_path: Path) -> None:
    assert ThermalZoneCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    # 1.5 failed the whole collector on a zone without temp or a device without cur_state,
    # and reported disabled zones; the latest release skips all three, so the peer reads the
    # tree without them.
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/class/thermal/thermal_zone3").unlink()
    (tmp_path / "sys/class/thermal/cooling_device3").unlink()
    (tmp_path / "sys/devices/virtual/thermal/thermal_zone2/mode").unlink()
    assert_matches_peer(node_exporter, "thermal_zone", [f"--path.sysfs={tmp_path / 'sys'}"],
                        ThermalZoneCollector(tmp_path / "sys").collect(), PREFIXES)


