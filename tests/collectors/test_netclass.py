from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from agent.collectors import netclass
from agent.collectors.netclass import (
    NetclassCollector,
    admin_state,
    netclass_families,
    parse_int,
    read_attribute,
    read_interfaces,
)
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "netclass" / "sys"
CLASS_NET = SYS / "class" / "net"
DEVICES = ["eth0", "lo", "veth4a1f2c9", "wlp3s0"]
EVERYTHING = re.compile("^$")  # node_exporter's default: ignore nothing


def samples(families: list[Metric], name: str) -> dict[str, float]:
    """device label -> value of the sample called name."""
    return {s.labels["device"]: s.value for f in families for s in f.samples if s.name == name}


def collect(ignored: str = "^$", ignore_invalid_speed: bool = False,
            sysfs: Path = SYS) -> list[Metric]:
    return NetclassCollector(sysfs, ignored, ignore_invalid_speed).collect()


def test_read_interfaces_follows_the_device_links_and_skips_plain_files() -> None:
    interfaces = read_interfaces(CLASS_NET, EVERYTHING)
    assert list(interfaces) == DEVICES  # not bonding_masters
    eth0 = interfaces["eth0"]
    assert eth0["ifalias"] == "uplink to core-sw1"
    assert (eth0["flags"], eth0["speed"], eth0["operstate"]) == ("0x1003", "10000", "up")
    assert "uevent" not in eth0  # only the attributes reported are read
    # Virtual devices have no speed (the kernel answers EINVAL); here the files are absent.
    assert "speed" not in interfaces["veth4a1f2c9"]
    assert "name_assign_type" not in interfaces["veth4a1f2c9"]
    assert "duplex" not in interfaces["lo"]
    assert interfaces["lo"]["ifalias"] == ""


def test_parse_int() -> None:
    assert parse_int("0x1003") == 4099
    assert parse_int("0x0") == 0
    assert parse_int("-1") == -1
    assert parse_int("65536") == 65536
    assert parse_int("") is None
    assert parse_int("up") is None


def test_golden() -> None:
    families = collect()
    assert samples(families, "node_network_up") == {
        "eth0": 1, "lo": 0, "veth4a1f2c9": 1, "wlp3s0": 0}
    info = {s.labels["device"]: s.labels for f in families for s in f.samples
            if s.name == "node_network_info"}
    assert info["eth0"] == {"device": "eth0", "address": "3c:ec:ef:41:8b:20",
                            "broadcast": "ff:ff:ff:ff:ff:ff", "duplex": "full",
                            "operstate": "up", "adminstate": "up",
                            "ifalias": "uplink to core-sw1"}
    assert info["lo"]["duplex"] == "" and info["lo"]["operstate"] == "unknown"
    assert {device: labels["adminstate"] for device, labels in info.items()} == {
        device: "up" if int(flags) & 1 else "down"
        for device, flags in samples(families, "node_network_flags").items()}
    # Mbit/s -> bytes/s; -1 (unknown) is kept, scaled, as in node_exporter.
    assert samples(families, "node_network_speed_bytes") == {
        "eth0": 1250000000, "wlp3s0": -125000}
    assert samples(families, "node_network_flags") == {
        "eth0": 4099, "lo": 9, "veth4a1f2c9": 4099, "wlp3s0": 4099}
    assert samples(families, "node_network_name_assign_type") == {
        "eth0": 4, "lo": 2, "wlp3s0": 4}
    assert samples(families, "node_network_mtu_bytes")["eth0"] == 9000
    assert samples(families, "node_network_protocol_type")["lo"] == 772
    assert samples(families, "node_network_iface_link")["veth4a1f2c9"] == 8
    assert samples(families, "node_network_carrier_changes_total")["wlp3s0"] == 12
    assert samples(families, "node_network_carrier_up_changes_total")["eth0"] == 4
    assert samples(families, "node_network_carrier_down_changes_total")["eth0"] == 3
    assert {f.name: f.type for f in families if f.type == "counter"} == {
        "node_network_carrier_changes": "counter",
        "node_network_carrier_up_changes": "counter",
        "node_network_carrier_down_changes": "counter"}
    assert_golden(families, "netclass")


def test_metric_set() -> None:
    assert sorted(s.name for f in collect() for s in f.samples[:1]) == sorted(
        f"node_network_{name}" for name in (
            "up", "info", "address_assign_type", "carrier", "carrier_changes_total",
            "carrier_up_changes_total", "carrier_down_changes_total", "device_id", "dormant",
            "flags", "iface_id", "iface_link", "iface_link_mode", "mtu_bytes",
            "name_assign_type", "net_dev_group", "speed_bytes", "transmit_queue_length",
            "protocol_type"))


def test_ignore_invalid_speed() -> None:
    families = collect(ignore_invalid_speed=True)
    assert samples(families, "node_network_speed_bytes") == {"eth0": 1250000000}


def test_ignored_devices_is_an_unanchored_regex() -> None:
    families = collect(ignored="^(lo|veth)")
    assert list(samples(families, "node_network_up")) == ["eth0", "wlp3s0"]
    families = collect(ignored="s0")
    assert list(samples(families, "node_network_up")) == ["eth0", "lo", "veth4a1f2c9"]


def test_no_class_net_reports_nothing(tmp_path: Path) -> None:
    assert collect(sysfs=tmp_path) == []


def test_a_device_gone_since_the_listing_is_skipped(tmp_path: Path) -> None:
    shutil.copytree(SYS, tmp_path, symlinks=True, dirs_exist_ok=True)
    (tmp_path / "class/net/veth0dead").symlink_to("../../devices/virtual/net/veth0dead")
    assert list(samples(collect(sysfs=tmp_path), "node_network_up")) == DEVICES


def failing_with(code: int) -> Callable[..., bytes]:
    def read(path: Path, dir_fd: int | None = None) -> bytes:
        raise OSError(code, os.strerror(code), str(path))
    return read


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP, errno.EACCES, errno.ENOENT])
def test_unreadable_attribute_is_skipped_like_a_missing_one(
        monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    speed = CLASS_NET / "eth0" / "speed"
    assert read_attribute(speed) == "10000"
    assert read_attribute(CLASS_NET / "eth0" / "phys_port_id") is None  # missing
    monkeypatch.setattr(netclass, "_sysfs_read", failing_with(code))
    assert read_attribute(speed) is None
    families = collect()
    assert samples(families, "node_network_speed_bytes") == {}
    assert samples(families, "node_network_up") == dict.fromkeys(DEVICES, 0.0)


def test_other_read_errors_fail_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netclass, "_sysfs_read", failing_with(errno.EIO))
    with pytest.raises(OSError, match="Input/output"):
        collect()


def test_values_are_cut_at_128_bytes_as_in_node_exporter(tmp_path: Path) -> None:
    (tmp_path / "ifalias").write_text("x" * 200 + "\n")
    assert read_attribute(tmp_path / "ifalias") == "x" * 128


def test_families_from_canned_attributes() -> None:
    families = netclass_families({"tun0": {"operstate": "unknown", "mtu": "1420",
                                           "flags": "0x1091", "speed": "garbage"}}, False)
    assert samples(families, "node_network_up") == {"tun0": 0}
    assert samples(families, "node_network_mtu_bytes") == {"tun0": 1420}
    assert samples(families, "node_network_flags") == {"tun0": 4241}
    assert samples(families, "node_network_speed_bytes") == {}
    assert len(families) == 4  # families without a sample are left out


def test_admin_state_from_the_up_flag() -> None:
    assert admin_state("0x1003") == "up"
    assert admin_state("0x1002") == "down"
    assert admin_state(None) == "unknown"
