"""pcidevice: node_pcidevice_* per PCI device of /sys/bus/pci/devices, as node_exporter's
latest release (off by default).

Per device: node_pcidevice_info (location, parent location or "*" under a host bridge, class,
vendor, device, subsystem ids, revision, and with --collector.pcidevice.names their names
from pci.ids), link speed (T/s) and width (-1 when the device has no link or reports
"Unknown"), D3cold, SR-IOV (0 when absent), the power state as one series per state, and the
NUMA node where known. A device procfs would refuse (an id that is not a number, a link speed
in no known unit) is left out, where node_exporter fails the collector; the rest are kept.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import go_order, read_attribute_bytes

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")
LOCATION = ("segment", "bus", "device", "function")
INFO = (*LOCATION, "parent_segment", "parent_bus", "parent_device", "parent_function",
        "class_id", "vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id",
        "revision")
NAMES = ("vendor_name", "device_name", "subsystem_vendor_name", "subsystem_device_name",
         "class_name")
POWER_STATES = ("D0", "D1", "D2", "D3hot", "D3cold", "unknown", "error")
IDS = ("class", "vendor", "device", "subsystem_vendor", "subsystem_device", "revision")

_HEX = re.compile(r"[+-]?[0-9a-fA-F]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_GO_INT0 = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[1-9][0-9]*|0)")


class DeviceError(Exception):
    """A device procfs would refuse to parse."""


def _int(text: str, pattern: re.Pattern[str], base: int, bits: int) -> int:
    """Go's strconv.ParseInt(text, base, bits)."""
    if not pattern.fullmatch(text):
        raise DeviceError(f"not a number: {text!r}")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if base == 0 and len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        value = int(digits, 8)
    else:
        value = int(digits, base)
    value *= sign
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise DeviceError(f"out of range: {text!r}")
    return value


def _uint(text: str, bits: int) -> int:
    """Go's strconv.ParseUint(text, 10, bits)."""
    if not text.isascii() or not text.isdigit() or int(text) >= 2**bits:
        raise DeviceError(f"not a number: {text!r}")
    return int(text)


def parse_location(text: str) -> tuple[str, str, str, str]:
    """"0000:00:02.1" -> ("0000", "00", "02", "1"), formatted as procfs prints it."""
    parts = text.split(":")
    if len(parts) != 3:
        raise DeviceError(f"invalid location {text!r}")
    parts = [*parts[:2], *parts[2].split(".")]
    if len(parts) != 4:
        raise DeviceError(f"invalid location {text!r}")
    segment, bus, device, function = (_int(p, _HEX, 16, 32) for p in parts)
    return (_go_hex(segment, 4), _go_hex(bus, 2), _go_hex(device, 2), _go_hex(function, 1))


def _go_hex(value: int, width: int) -> str:
    """fmt.Sprintf("%0Nx", value), a sign before the padding as Go writes it."""
    return ("-" + format(-value, f"0{width - 1}x")) if value < 0 else format(value, f"0{width}x")


def parse_speed(text: str) -> float:
    """"8.0 GT/s PCIe" -> 8e9 transfers per second."""
    parts = text.split(" ", 1)
    if len(parts) != 2 or parts[1] != "GT/s PCIe":
        raise DeviceError(f"link speed {text!r}")
    try:
        return float(parts[0].strip()) * 1e9
    except ValueError:
        raise DeviceError(f"link speed {text!r}") from None


@dataclass
class Device:
    location: tuple[str, str, str, str]
    parent: tuple[str, str, str, str] | None
    ids: dict[str, int]
    values: dict[str, float]  # metric suffix -> value
    power_state: str | None
    numa_node: int | None


def _optional(path: str) -> str | None:
    """An optional attribute, trimmed; None when absent; DeviceError when unreadable."""
    try:
        return read_attribute_bytes(path).decode(errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeviceError(f"{os.path.basename(path)}: {exc.strerror}") from None


def read_device(link: str) -> Device:
    try:
        target = os.readlink(link)
    except OSError as exc:
        raise DeviceError(f"readlink: {exc.strerror}") from None
    target = target.rstrip("/") or target
    location = parse_location(os.path.basename(target))
    parent_name = os.path.basename(os.path.dirname(target))
    parent = None if parent_name.startswith("pci") else parse_location(parent_name)
    ids = {}
    for name in IDS:
        text = _optional(os.path.join(link, name))
        if text is None:
            raise DeviceError(f"{name} missing")
        ids[name] = _int(text, _GO_INT0, 0, 32) % 2**32
    values: dict[str, float] = {
        "max_link_transfers_per_second": -1.0, "max_link_width": -1.0,
        "current_link_transfers_per_second": -1.0, "current_link_width": -1.0,
        "d3cold_allowed": 0.0, "sriov_drivers_autoprobe": 0.0, "sriov_numvfs": 0.0,
        "sriov_totalvfs": 0.0, "sriov_vf_total_msix": 0.0}
    numa_node = None
    for name in ("max_link_speed", "max_link_width", "current_link_speed", "current_link_width",
                 "numa_node"):
        text = _optional(os.path.join(link, name))
        if not text or text.startswith("Unknown"):
            continue
        if name.endswith("_speed"):
            values[name.replace("speed", "transfers_per_second")] = parse_speed(text)
        elif name.endswith("_width"):
            values[name] = float(_int(text, _DECIMAL, 10, 64))
        else:
            numa_node = _int(text, _DECIMAL, 10, 32)
    for name in ("sriov_drivers_autoprobe", "d3cold_allowed"):  # booleans written 0 or 1
        text = _optional(os.path.join(link, name))
        if text:
            values[name] = 1.0 if _int(text, _DECIMAL, 10, 32) != 0 else 0.0
    for name, bits in (("sriov_numvfs", 32), ("sriov_totalvfs", 32),
                       ("sriov_vf_total_msix", 64)):
        text = _optional(os.path.join(link, name))
        if text:
            values[name] = float(_uint(text, bits))
    power_state = _optional(os.path.join(link, "power_state")) or None
    return Device(location, parent, ids, values, power_state, numa_node)


@dataclass
class PciIds:
    """The parts of a pci.ids file node_exporter's name resolution reads."""

    vendors: dict[str, str]
    devices: dict[tuple[str, str], str]
    subsystems: dict[tuple[str, str, str], str]  # (vendor, device, "subvendor:subdevice")
    classes: dict[str, str]  # "01", "0108" and "010802"


def parse_pci_ids(text: str) -> PciIds:
    ids = PciIds({}, {}, {}, {})
    vendor = device = base_class = subclass = ""
    in_class = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            parts = line.split("  ", 1)
            if len(parts) == 2:
                base_class = parts[0][1:].strip()
                ids.classes[base_class] = parts[1].strip()
                in_class = True
            continue
        single = line.startswith("\t") and not line.startswith("\t\t")
        double = line.startswith("\t\t") and not line.startswith("\t\t\t")
        if in_class and (single or double):
            parts = line[1 if single else 2:].split("  ", 1)
            if len(parts) == 2 and single and base_class:
                subclass = base_class + parts[0].strip()
                ids.classes[subclass] = parts[1].strip()
            elif len(parts) == 2 and double and subclass:
                ids.classes[subclass + parts[0].strip()] = parts[1].strip()
            continue
        if not line.startswith("\t"):
            parts = line.split("  ", 1)
            if len(parts) == 2:
                vendor = parts[0].strip()
                ids.vendors[vendor] = parts[1].strip()
                device = ""
                in_class = False
            continue
        if single:
            parts = line[1:].split("  ", 1)
            if len(parts) == 2 and vendor:
                device = parts[0].strip()
                ids.devices[(vendor, device)] = parts[1].strip()
            continue
        if line.startswith("\t\t"):
            parts = line[2:].split("  ", 1)
            if len(parts) == 2 and vendor and device:
                sub = parts[0].split()
                if len(sub) == 2:
                    ids.subsystems[(vendor, device, f"{sub[0]}:{sub[1]}")] = parts[1].strip()
    return ids


def load_pci_ids(path: str) -> PciIds:
    """The named file, else the first default one that opens; empty when none does."""
    for candidate in (path,) if path else IDS_PATHS:
        try:
            with open(candidate, encoding="utf-8", errors="replace") as handle:
                return parse_pci_ids(handle.read())
        except OSError:
            continue
    return PciIds({}, {}, {}, {})


def resolve_names(ids: PciIds, vendor: str, device: str, sub_vendor: str, sub_device: str,
          class_id: str) -> list[str]:
    """node_exporter's lookups: an unknown id is shown bare (no 0x), an unknown class as
    "Unknown class (...)"; the class by programming interface, subclass, then base class."""
    vendor, device = vendor[2:], device[2:]
    sub_vendor, sub_device, class_id = sub_vendor[2:], sub_device[2:], class_id[2:]
    class_name = next((ids.classes[class_id[:n]] for n in (6, 4, 2)
                       if len(class_id) >= n and class_id[:n] in ids.classes),
                      f"Unknown class ({class_id})")
    return [ids.vendors.get(vendor, vendor), ids.devices.get((vendor, device), device),
            ids.vendors.get(sub_vendor, sub_vendor),
            ids.subsystems.get((vendor, device, f"{sub_vendor}:{sub_device}"), sub_device),
            class_name]


GAUGES = (
    ("max_link_transfers_per_second", "Value of maximum link's transfers per second (T/s)"),
    ("max_link_width", "Value of maximum link's width (number of lanes)"),
    ("current_link_transfers_per_second", "Value of current link's transfers per second (T/s)"),
    ("current_link_width", "Value of current link's width (number of lanes)"),
    ("d3cold_allowed", "Whether the PCIe device supports D3cold power state (0/1)."),
    ("sriov_drivers_autoprobe",
     "Whether SR-IOV drivers autoprobe is enabled for the device (0/1)."),
    ("sriov_numvfs", "Number of Virtual Functions (VFs) currently enabled for SR-IOV."),
    ("sriov_totalvfs", "Total number of Virtual Functions (VFs) supported by the device."),
    ("sriov_vf_total_msix", "Total number of MSI-X vectors for Virtual Functions."),
)


class PcideviceCollector:
    def __init__(self, sysfs: Path, names: bool = False, idsfile: str = "") -> None:
        self._devices_dir = str(sysfs / "bus" / "pci" / "devices")
        self._ids = load_pci_ids(idsfile) if names else None

    def collect(self) -> list[Metric]:
        try:
            entries = sorted(os.listdir(self._devices_dir))
        except OSError:
            return []
        devices = []
        for entry in entries:
            try:
                devices.append(read_device(os.path.join(self._devices_dir, entry)))
            except DeviceError:
                continue
        return self.families(devices)

    def families(self, devices: list[Device]) -> list[Metric]:
        info = GaugeMetricFamily(
            "node_pcidevice_info",
            "Non-numeric data from /sys/bus/pci/devices/<location>, value is always 1.",
            labels=[*INFO, *(NAMES if self._ids is not None else ())])
        gauges = {suffix: GaugeMetricFamily(f"node_pcidevice_{suffix}", help_text,
                                            labels=list(LOCATION))
                  for suffix, help_text in GAUGES}
        power = GaugeMetricFamily(
            "node_pcidevice_power_state",
            "PCIe device power state, one of: D0, D1, D2, D3hot, D3cold, unknown or error.",
            labels=[*LOCATION, "state"])
        numa = GaugeMetricFamily(
            "node_pcidevice_numa_node",
            "NUMA node number for the PCI device. -1 indicates unknown or not available.",
            labels=list(LOCATION))
        for device in devices:
            ids = device.ids
            hex_ids = [f"0x{ids['class']:06x}", f"0x{ids['vendor']:04x}",
                       f"0x{ids['device']:04x}", f"0x{ids['subsystem_vendor']:04x}",
                       f"0x{ids['subsystem_device']:04x}"]
            values = [*device.location, *(device.parent or ("*",) * 4), *hex_ids,
                      f"0x{ids['revision']:02x}"]
            if self._ids is not None:
                class_id, vendor, device_id, sub_vendor, sub_device = hex_ids
                values += resolve_names(self._ids, vendor, device_id, sub_vendor, sub_device,
                                        class_id)
            info.add_metric(values, 1.0)
            location = list(device.location)
            for suffix, _ in GAUGES:
                gauges[suffix].add_metric(location, device.values[suffix])
            if device.power_state is not None:
                for state in POWER_STATES:
                    power.add_metric([*location, state],
                                     1.0 if state == device.power_state else 0.0)
            if device.numa_node is not None and device.numa_node != -1:
                numa.add_metric(location, float(device.numa_node))
        return go_order((info, *gauges.values(), power, numa))


def create(context: Context, settings: Any) -> PcideviceCollector:
    return PcideviceCollector(context.sysfs, settings.names, settings.idsfile)
