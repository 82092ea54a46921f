"""thermal_zone: node_thermal_zone_temp and node_cooling_device_* from /sys/class/thermal, as
node_exporter's latest release.

A zone whose mode is `disabled`, or whose type, policy or temp cannot be read, is left out;
so is a cooling device missing its type or states. No /sys/class/thermal is no data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    Families,
    Unchanged,
    numbered,
    parse_int,
    read_attribute,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


ZONE_FILES = ("mode", "type", "policy", "temp")
COOLING_FILES = ("type", "max_state", "cur_state")
# Of each zone and each cooling device: its number and its files as read (None: unreadable).
ThermalRaw = tuple[tuple[tuple[str, tuple[str | None, ...]], ...],
                   tuple[tuple[str, tuple[str | None, ...]], ...]]


def _read_entries(thermal: str, prefix: str, files: tuple[str, ...]
                  ) -> tuple[tuple[str, tuple[str | None, ...]], ...]:
    return tuple((entry.removeprefix(prefix),
                  tuple(read_attribute(f"{thermal}/{entry}/{name}") for name in files))
                 for entry in numbered(thermal, prefix))


def zone_temperature(files: tuple[str | None, ...]) -> tuple[str, int] | None:
    """(type, millidegrees Celsius) of an enabled, readable zone."""
    mode, kind, policy, temp = files
    if mode == "disabled" or kind is None or policy is None or temp is None:
        return None
    value = parse_int(temp)
    return None if value is None else (kind, value)


def cooling_state(files: tuple[str | None, ...]) -> tuple[str, int, int] | None:
    """(type, max_state, cur_state); cur_state may be -1 (intel_powerclamp)."""
    kind, maximum, current = files
    if kind is None or maximum is None or current is None:
        return None
    max_state, cur_state = parse_int(maximum), parse_int(current)
    if max_state is None or cur_state is None:
        return None
    return kind, max_state, cur_state


def thermal_families(raw: ThermalRaw) -> list[Metric]:
    zones, devices = raw
    out = Families()
    for zone, files in zones:
        reading = zone_temperature(files)
        if reading is not None:
            out.add("node_thermal_zone_temp", "Zone temperature in Celsius", ("zone", "type"),
                    [zone, reading[0]], reading[1] / 1000.0)
    for device, files in devices:
        state = cooling_state(files)
        if state is None:
            continue
        labels = [device, state[0]]
        out.add("node_cooling_device_cur_state",
                "Current throttle state of the cooling device", ("name", "type"), labels,
                float(state[2]))
        out.add("node_cooling_device_max_state",
                "Maximum throttle state of the cooling device", ("name", "type"), labels,
                float(state[1]))
    return out.result()


class ThermalZoneCollector:
    def __init__(self, sysfs: Path) -> None:
        self._thermal = str(sysfs / "class" / "thermal")
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        raw = (_read_entries(self._thermal, "thermal_zone", ZONE_FILES),
               _read_entries(self._thermal, "cooling_device", COOLING_FILES))
        return self._unchanged.get(raw, lambda: thermal_families(raw))


def create(context: Context, settings: Any) -> ThermalZoneCollector:
    return ThermalZoneCollector(context.sysfs)
