from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.pcidevice import (
    DeviceError,
    PcideviceCollector,
    parse_location,
    parse_speed,
)
from tests.golden import FIXTURES, assert_golden

SYS = FIXTURES / "pcidevice" / "sys"
IDS = FIXTURES / "pcidevice" / "pci.ids"


def by_location(families, name: str) -> dict[str, dict[str, str] | float]:
    out: dict[str, dict[str, str] | float] = {}
    for family in families:
        for s in family.samples:
            if s.name == name:
                key = ":".join(s.labels[k] for k in ("segment", "bus", "device", "function"))
                out[key] = s.labels if name.endswith("_info") else s.value
    return out


def test_golden() -> None:
    families = PcideviceCollector(SYS).collect()
    info = by_location(families, "node_pcidevice_info")
    # 0000:00:03.0 reports its speed in no known unit: left out, the others kept
    assert sorted(info) == ["0000:00:02:1", "0000:00:1f:0", "0000:01:00:0", "0001:41:00:1"]
    nvme = info["0000:01:00:0"]
    assert isinstance(nvme, dict)
    assert (nvme["parent_bus"], nvme["parent_device"], nvme["parent_function"]) == (
        "00", "02", "1")
    assert (nvme["class_id"], nvme["vendor_id"], nvme["revision"]) == (
        "0x010802", "0x144d", "0x00")
    root = info["0000:00:02:1"]
    assert isinstance(root, dict) and root["parent_segment"] == "*"  # under the host bridge
    assert by_location(families, "node_pcidevice_current_link_transfers_per_second") == {
        "0000:00:02:1": 8e9, "0000:00:1f:0": -1, "0000:01:00:0": 2.5e9, "0001:41:00:1": -1}
    assert by_location(families, "node_pcidevice_max_link_width")["0001:41:00:1"] == 16
    assert by_location(families, "node_pcidevice_sriov_totalvfs")["0001:41:00:1"] == 8
    # NUMA node -1 and absent are both left out
    assert by_location(families, "node_pcidevice_numa_node") == {
        "0000:01:00:0": 0, "0001:41:00:1": 1}
    power = [(s.labels["state"], s.value) for f in families for s in f.samples
             if s.name == "node_pcidevice_power_state" and s.labels["bus"] == "01"]
    assert dict(power) == {"D0": 0, "D1": 0, "D2": 0, "D3hot": 1, "D3cold": 0,
                           "unknown": 0, "error": 0}
    assert_golden(families, "pcidevice")


def test_names_from_pci_ids() -> None:
    families = PcideviceCollector(SYS, names=True, idsfile=str(IDS)).collect()
    info = by_location(families, "node_pcidevice_info")
    nvme, legacy, nic = info["0000:01:00:0"], info["0000:00:1f:0"], info["0001:41:00:1"]
    assert isinstance(nvme, dict) and isinstance(legacy, dict) and isinstance(nic, dict)
    assert (nvme["vendor_name"], nvme["device_name"], nvme["subsystem_vendor_name"],
            nvme["subsystem_device_name"], nvme["class_name"]) == (
        "Samsung Electronics Co Ltd", "NVMe SSD Controller PM9A1/PM9A3/980PRO",
        "Samsung Electronics Co Ltd", "SSD 980 PRO", "NVM Express")
    # unknown ids shown bare, the class by subclass or base class
    assert (legacy["subsystem_vendor_name"], legacy["class_name"]) == ("0000", "Bridge")
    assert (nic["subsystem_device_name"], nic["class_name"]) == ("0007", "Ethernet controller")
    assert_golden(families, "pcidevice_names")


def test_names_without_pci_ids_show_ids(tmp_path: Path) -> None:
    families = PcideviceCollector(SYS, names=True, idsfile=str(tmp_path / "none")).collect()
    nvme = by_location(families, "node_pcidevice_info")["0000:01:00:0"]
    assert isinstance(nvme, dict)
    assert (nvme["vendor_name"], nvme["class_name"]) == ("144d", "Unknown class (010802)")


@pytest.mark.parametrize("text,parts", [("0000:00:02.1", ("0000", "00", "02", "1")),
                                        ("10000:e3:1f.7", ("10000", "e3", "1f", "7"))])
def test_location(text: str, parts: tuple[str, ...]) -> None:
    assert parse_location(text) == parts


@pytest.mark.parametrize("text", ["pci0000:00", "0000:00:02", "0000:00:02.1.2", "x:00:02.1"])
def test_location_refused(text: str) -> None:
    with pytest.raises(DeviceError):
        parse_location(text)


def test_speed() -> None:
    assert parse_speed("16.0 GT/s PCIe") == 16e9
    with pytest.raises(DeviceError):
        parse_speed("8 GT/s")


def test_no_pci_bus_is_no_data(tmp_path: Path) -> None:
    assert PcideviceCollector(tmp_path).collect() == []
