from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collectors.bonding import BondingCollector
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "bonding" / "sys"


def test_golden() -> None:
    families = BondingCollector(SYS).collect()
    found = {(s.name, s.labels["master"]): s.value for f in families for s in f.samples}
    assert found == {
        # A bond with no slaves; slave links named lower_* and (before 4.13) slave_*.
        ("node_bonding_active", "bond0"): 0, ("node_bonding_slaves", "bond0"): 0,
        ("node_bonding_active", "dmz"): 2, ("node_bonding_slaves", "dmz"): 2,
        ("node_bonding_active", "int"): 1, ("node_bonding_slaves", "int"): 2,
    }
    assert_golden(families, "bonding")


def test_no_bonding_module_means_no_series(tmp_path: Path) -> None:
    assert BondingCollector(tmp_path).collect() == []


def test_an_unreadable_slave_fails_the_run(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path, dirs_exist_ok=True)
    (tmp_path / "class/net/int/lower_eth5/bonding_slave/mii_status").unlink()
    with pytest.raises(FileNotFoundError):
        BondingCollector(tmp_path).collect()


def test_matches_node_exporter_on_the_fixture(node_exporter) -> None:  # type: ignore[no-untyped-def]
    from agent.config import Config
    from tests.test_differential import compare

    url = node_exporter("--collector.disable-defaults", "--collector.bonding",
                        f"--path.sysfs={SYS}")
    compare("bonding", Config.model_validate({"paths": {"sysfs": str(SYS)}}), url)
