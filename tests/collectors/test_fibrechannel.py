from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.collectors.fibrechannel import FibreChannelCollector, HostError, parse_uint
from tests.collectors.peer import assert_matches_peer
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "fibrechannel" / "sys"
HOST0 = "devices/pci0000:00/0000:00:02.0/0000:04:00.0/host0/fc_host/host0"


def by_name(families) -> dict[str, dict[str, float]]:
    return {f.name: {s.labels["fc_host"]: s.value for s in f.samples} for f in families}


def test_golden() -> None:
    families = FibreChannelCollector(SYS).collect()
    values = by_name(families)
    # 0xffffffffffffffff: not implemented by the firmware, left out
    assert values["node_fibrechannel_dumped_frames"] == {"host1": 0}
    assert values["node_fibrechannel_fcp_packet_aborts"] == {"host0": 0x13}
    assert values["node_fibrechannel_loss_of_signal"] == {"host0": 0x11, "host1": 0x110}
    info = {s.labels["fc_host"]: s.labels for f in families for s in f.samples
            if f.name == "node_fibrechannel_info"}
    assert info["host0"]["port_name"] == "1000e0071bce95f2"  # 0x cut, as procfs
    assert info["host0"]["fabric_name"] == "0"
    # a driver that exposes only speed: the other labels are empty (the latest release)
    assert info["host1"] == {"fc_host": "host1", "speed": "8 Gbit", "port_state": "",
                             "port_type": "", "port_id": "", "port_name": "",
                             "fabric_name": "", "symbolic_name": "", "supported_classes": "",
                             "supported_speeds": "", "dev_loss_tmo": ""}
    assert_golden(families, "fibrechannel")


@pytest.mark.parametrize("text,value", [("0", 0), ("42", 42), ("0x2a", 42), ("052", 42),
                                        ("0xffffffffffffffff", 2**64 - 1)])
def test_counter_syntax(text: str, value: int) -> None:
    assert parse_uint(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+1", "bad", "0x", "18446744073709551616", " 1"])
def test_counter_syntax_refused(text: str) -> None:
    with pytest.raises(HostError):
        parse_uint(text)


def test_a_host_with_a_bad_counter_is_left_out(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys" / HOST0 / "statistics" / "rx_frames").write_text("bad\n")
    families = FibreChannelCollector(tmp_path / "sys").collect()
    assert {h for f in by_name(families).values() for h in f} == {"host1"}


def test_missing_statistics_is_info_only(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    shutil.rmtree(tmp_path / "sys" / HOST0 / "statistics")
    values = by_name(FibreChannelCollector(tmp_path / "sys").collect())
    assert "host0" in values["node_fibrechannel_info"]
    assert "host0" not in values["node_fibrechannel_rx_frames"]


def test_no_fc_host_class_is_no_data(tmp_path: Path) -> None:
    assert FibreChannelCollector(tmp_path).collect() == []


def test_matches_node_exporter_on_the_fixture(node_exporter, tmp_path: Path) -> None:
    # 1.5 failed the whole collector on a host without every attribute (host1); the latest
    # release reports it with empty labels, so the peer reads the tree without it.
    shutil.copytree(SYS, tmp_path / "sys", symlinks=True)
    (tmp_path / "sys/class/fc_host/host1").unlink()
    assert_matches_peer(node_exporter, "fibrechannel", [f"--path.sysfs={tmp_path / 'sys'}"],
                        FibreChannelCollector(tmp_path / "sys").collect(), "node_fibrechannel_")
