"""powersupplyclass: node_power_supply_* from /sys/class/power_supply (batteries, mains, UPS,
USB), as node_exporter's latest release.

Every regular file of a supply is read once; the numeric attributes node_exporter knows become
series in its units (µA, µV, µWh, µW -> base units; tenths of °C -> °C), the text ones labels
of node_power_supply_info. An attribute the driver refuses to report (ENODATA, EIO, EINVAL) is
left out, never the supply.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    Families,
    Unchanged,
    open_dir,
    parse_int,
    read_attribute_bytes,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# metric suffix -> attribute, by scale.
AS_IS = {
    "authentic": "authentic", "calibrate": "calibrate", "capacity": "capacity",
    "capacity_alert_max": "capacity_alert_max", "capacity_alert_min": "capacity_alert_min",
    "cyclecount": "cycle_count", "online": "online", "present": "present",
    "time_to_empty_seconds": "time_to_empty_now", "time_to_full_seconds": "time_to_full_now",
}
MICRO = {
    "current_boot": "current_boot", "current_max": "current_max",
    "current_ampere": "current_now", "energy_empty": "energy_empty",
    "energy_empty_design": "energy_empty_design", "energy_full": "energy_full",
    "energy_full_design": "energy_full_design", "energy_watthour": "energy_now",
    "voltage_boot": "voltage_boot", "voltage_max": "voltage_max",
    "voltage_max_design": "voltage_max_design", "voltage_min": "voltage_min",
    "voltage_min_design": "voltage_min_design", "voltage_volt": "voltage_now",
    "voltage_ocv": "voltage_ocv", "charge_control_limit": "charge_control_limit",
    "charge_control_limit_max": "charge_control_limit_max",
    "charge_counter": "charge_counter", "charge_empty": "charge_empty",
    "charge_empty_design": "charge_empty_design", "charge_full": "charge_full",
    "charge_full_design": "charge_full_design", "charge_ampere": "charge_now",
    "charge_term_current": "charge_term_current",
    "constant_charge_current": "constant_charge_current",
    "constant_charge_current_max": "constant_charge_current_max",
    "constant_charge_voltage": "constant_charge_voltage",
    "constant_charge_voltage_max": "constant_charge_voltage_max",
    "precharge_current": "precharge_current", "input_current_limit": "input_current_limit",
    "power_watt": "power_now",
}
TENTHS = {
    "temp_celsius": "temp", "temp_alert_max_celsius": "temp_alert_max",
    "temp_alert_min_celsius": "temp_alert_min", "temp_ambient_celsius": "temp_ambient",
    "temp_ambient_max_celsius": "temp_ambient_max",
    "temp_ambient_min_celsius": "temp_ambient_min", "temp_max_celsius": "temp_max",
    "temp_min_celsius": "temp_min",
}
# node_power_supply_info labels from text attributes (label name = attribute name).
INFO = ("capacity_level", "charge_type", "health", "manufacturer", "model_name", "scope",
        "serial_number", "status", "technology", "type", "usb_type")
# Numeric attributes procfs parses (a value it cannot parse as an integer is dropped).
NUMERIC = frozenset(AS_IS.values()) | frozenset(MICRO.values()) | frozenset(TENTHS.values())

Supply = dict[str, str]  # attribute -> trimmed value


def read_supply(directory: str) -> Supply:
    attributes: Supply = {}
    with open_dir(directory) as dir_fd:  # files opened relative to it: no path resolution
        with os.scandir(dir_fd) as entries:
            names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        for name in names:
            if name not in NUMERIC and name not in INFO:
                continue
            try:
                raw = read_attribute_bytes(name, dir_fd=dir_fd)
            except OSError:
                continue
            attributes[name] = raw.decode(errors="replace").strip()
    return attributes


def read_supplies(class_dir: str, ignored: re.Pattern[str]) -> dict[str, Supply]:
    try:
        names = sorted(os.listdir(class_dir))
    except FileNotFoundError:
        return {}
    supplies = {}
    for name in names:
        if ignored.search(name):
            continue
        try:
            supplies[name] = read_supply(os.path.join(class_dir, name))
        except OSError:  # gone since the listing, or not a directory
            continue
    return supplies


def supply_families(supplies: dict[str, Supply]) -> list[Metric]:
    out = Families()
    for name, attributes in supplies.items():
        for table, scale in ((AS_IS, 1.0), (MICRO, 1e6), (TENTHS, 10.0)):
            for suffix, attribute in table.items():
                value = parse_int(attributes.get(attribute, ""), 0)
                if value is not None:
                    out.add(f"node_power_supply_{suffix}",
                            f"{suffix} value of /sys/class/power_supply/<power_supply>.",
                            ("power_supply",), [name], value / scale)
        info = {"power_supply": name}
        info.update((label, attributes[label]) for label in INFO if attributes.get(label))
        labels = sorted(info)
        out.add("node_power_supply_info", "info of /sys/class/power_supply/<power_supply>.",
                labels, [info[label] for label in labels], 1.0)
    return out.result()


class PowerSupplyClassCollector:
    def __init__(self, sysfs: Path, ignored_supplies: str) -> None:
        self._class_dir = str(sysfs / "class" / "power_supply")
        self._ignored = re.compile(ignored_supplies)
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        supplies = read_supplies(self._class_dir, self._ignored)
        raw = tuple((name, tuple(values.items())) for name, values in supplies.items())
        return self._unchanged.get(raw, lambda: supply_families(supplies))


def create(context: Context, settings: Any) -> PowerSupplyClassCollector:
    return PowerSupplyClassCollector(context.sysfs, settings.ignored_supplies)
