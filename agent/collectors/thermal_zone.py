"""thermal_zone: node_thermal_zone_temp and node_cooling_device_* from /sys/class/thermal, as
node_exporter's latest release.

A zone whose mode is `disabled`, or whose type, policy or temp cannot be read, is left out;
so is a cooling device missing its type or states. No /sys/class/thermal is no data.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, parse_int, read_attribute

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def zone_temperature(zone: str) -> tuple[str, int] | None:
    """(type, millidegrees Celsius) of an enabled, readable zone."""
    if read_attribute(os.path.join(zone, "mode")) == "disabled":
        return None
    kind = read_attribute(os.path.join(zone, "type"))
    policy = read_attribute(os.path.join(zone, "policy"))
    temp = read_attribute(os.path.join(zone, "temp"))
    if kind is None or policy is None or temp is None:
        return None
    value = parse_int(temp)
    return None if value is None else (kind, value)


def cooling_state(device: str) -> tuple[str, int, int] | None:
    """(type, max_state, cur_state); cur_state may be -1 (intel_powerclamp)."""
    kind = read_attribute(os.path.join(device, "type"))
    maximum = read_attribute(os.path.join(device, "max_state"))
    current = read_attribute(os.path.join(device, "cur_state"))
    if kind is None or maximum is None or current is None:
        return None
    max_state, cur_state = parse_int(maximum), parse_int(current)
    if max_state is None or cur_state is None:
        return None
    return kind, max_state, cur_state


class ThermalZoneCollector:
    def __init__(self, sysfs: Path) -> None:
        self._thermal = str(sysfs / "class" / "thermal")

    def collect(self) -> list[Metric]:
        out = Families()
        for zone in sorted(glob.glob(os.path.join(glob.escape(self._thermal),
                                                  "thermal_zone[0-9]*"))):
            reading = zone_temperature(zone)
            if reading is not None:
                out.add("node_thermal_zone_temp", "Zone temperature in Celsius",
                        ("zone", "type"),
                        [os.path.basename(zone).removeprefix("thermal_zone"), reading[0]],
                        reading[1] / 1000.0)
        for device in sorted(glob.glob(os.path.join(glob.escape(self._thermal),
                                                    "cooling_device[0-9]*"))):
            state = cooling_state(device)
            if state is None:
                continue
            labels = [os.path.basename(device).removeprefix("cooling_device"), state[0]]
            out.add("node_cooling_device_cur_state",
                    "Current throttle state of the cooling device", ("name", "type"), labels,
                    float(state[2]))
            out.add("node_cooling_device_max_state",
                    "Maximum throttle state of the cooling device", ("name", "type"), labels,
                    float(state[1]))
        return out.result()


def create(context: Context, settings: Any) -> ThermalZoneCollector:
    return ThermalZoneCollector(context.sysfs)
