from __future__ import annotations

import shutil
from pathlib import Path

from agent.collectors.dmi import HELP, DmiCollector
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "dmi" / "sys"


def test_golden() -> None:
    families = DmiCollector(SYS).collect()
    labels = families[0].samples[0].labels
    assert labels["system_vendor"] == "Dell Inc."  # from sys_vendor
    assert labels["chassis_version"] == ""  # present but empty: kept
    assert "board_asset_tag" not in labels  # absent: left out
    assert HELP.startswith("A metric with a constant '1' value labeled by bios_date, ")
    assert_golden(families, "dmi")


def test_root_only_attribute_is_left_out(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/devices/virtual/dmi/id/product_serial").unlink()
    labels = DmiCollector(tmp_path / "sys").collect()[0].samples[0].labels
    assert "product_serial" not in labels and labels["product_name"] == "PowerEdge R6515"


def test_no_dmi_is_no_data(tmp_path: Path) -> None:
    assert DmiCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:
    assert_matches_peer(node_exporter, "dmi", [f"--path.sysfs={SYS}"],
                        DmiCollector(SYS).collect(), "node_dmi_")
