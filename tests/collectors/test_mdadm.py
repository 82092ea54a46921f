from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors.mdadm import MdadmCollector, parse_mdstat, read_mdraids
from tests.golden import FIXTURES, assert_golden, assert_node_exporter

MDADM = FIXTURES / "mdadm"


def collector(proc: Path = MDADM / "proc", sys: Path = MDADM / "sys") -> MdadmCollector:
    return MdadmCollector(proc, sys)


def value(families: list[Metric], name: str, **labels: str) -> float:
    [found] = [s.value for f in families for s in f.samples
               if s.name == name and s.labels.items() >= labels.items()]
    return found


def test_matches_node_exporter_on_its_fixture_cases() -> None:
    families = collector().collect()
    assert_node_exporter(families, MDADM / "node_exporter.prom")
    assert_golden(families, "mdadm")


def test_sync_states_and_members() -> None:
    stats = {md.name: md for md in parse_mdstat((MDADM / "proc/mdstat").read_text())}
    assert stats["md6"].state == "recovering" and stats["md6"].blocks_synced == 16775552
    assert stats["md201"].state == "checking" and stats["md201"].blocks_synced == 114176
    assert stats["md9"].state == "resyncing" and stats["md9"].blocks_synced == 0  # DELAYED
    assert stats["md11"].state == "resyncing" and stats["md11"].blocks_synced == 0  # PENDING
    assert (stats["md7"].disks_active, stats["md7"].disks_total) == (3, 4)  # bitmap line skipped
    assert stats["md7"].disks_failed == 1 and stats["md7"].state == "active"
    assert (stats["md219"].disks_spare, stats["md219"].state) == (3, "inactive")
    assert stats["md120"].disks_total == 2  # linear: members counted on the device line


def test_reshape_sets_no_state() -> None:
    text = ("Personalities : [raid5]\n"
            "md5 : active raid5 sdd1[3] sdc1[2] sdb1[1] sda1[0]\n"
            "      3144192 blocks super 1.2 level 5, 512k chunk, algorithm 2 [4/4] [UUUU]\n"
            "      [===>.................]  reshape = 17.4% (183296/1048064) "
            "finish=1.5min speed=9152K/sec\n\nunused devices: <none>\n")
    [md] = parse_mdstat(text)
    assert (md.state, md.blocks_synced) == ("reshaping", 183296)


def test_alert_expressions_see_an_inactive_and_an_insufficient_array() -> None:
    families = collector().collect()
    assert value(families, "node_md_state", device="md4", state="inactive") == 1
    assert value(families, "node_md_disks_required", device="md7") - value(
        families, "node_md_disks", device="md7", state="active") == 1


def test_unreadable_array_in_sysfs_is_skipped() -> None:
    assert "md9" not in {raid.device for raid in read_mdraids(MDADM / "sys")}


@pytest.mark.parametrize("text", [
    "Personalities : [invalid]\nmd3 : invalid\n      314159265 blocks 64k chunks\n\nunused\n",
    "md12 : active raid0 sdc2[0] sdd2[1]\n\n      3886394368 blocks super 1.2 512k chunks\n",
])
def test_malformed_mdstat_fails(text: str) -> None:
    with pytest.raises(ValueError, match="mdstat"):
        parse_mdstat(text)


def test_no_md_module_means_no_series(tmp_path: Path) -> None:
    assert collector(tmp_path, tmp_path).collect() == []
