from __future__ import annotations

import shutil
from pathlib import Path

from agent.collectors.tapestats import TapestatsCollector
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "tapestats" / "sys"


def values(families, name: str) -> dict[str, float]:
    return {s.labels["device"]: s.value for f in families for s in f.samples if s.name == name}


def test_golden() -> None:
    families = TapestatsCollector(SYS).collect()
    # st0's rewind/mode variants are the same drive; st2's garbage counter drops st2 only
    assert values(families, "node_tape_io_now") == {"st0": 1, "st1": 0}
    assert values(families, "node_tape_io_time_seconds_total")["st0"] == 9247.01108772
    assert values(families, "node_tape_written_bytes_total")["st0"] == 1496246784000
    # files st1's driver lacks read 0, as node_exporter
    assert values(families, "node_tape_residual_total")["st1"] == 0
    assert values(families, "node_tape_write_time_seconds_total")["st1"] == 0
    assert_golden(families, "tapestats")


def test_ignored_devices() -> None:
    families = TapestatsCollector(SYS, "^st0$").collect()
    assert values(families, "node_tape_io_now") == {"st1": 0}


def test_no_scsi_tape_class_is_no_data(tmp_path: Path) -> None:
    assert TapestatsCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    # node_exporter fails the whole collector on st2's garbage counter: the peer reads the
    # tree without it.
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/class/scsi_tape/st2").unlink()
    assert_matches_peer(node_exporter, "tapestats", [f"--path.sysfs={tmp_path / 'sys'}"],
                        TapestatsCollector(tmp_path / "sys").collect(), "node_tape_")
