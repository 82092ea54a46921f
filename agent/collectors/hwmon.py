"""hwmon: node_hwmon_* from /sys/class/hwmon (temperatures, fans, voltages, currents, power,
energy, humidity, PWM, frequency, intrusion), as node_exporter's latest release.

Each chip directory and its `device` directory are scanned for sensor files named
<type><number>_<property>; every readable numeric value becomes a series named after the type
and property, in base units. A value that cannot be read (EIO, EAGAIN from a broken driver) is
skipped with its sensor attribute, never the whole collection.

Cost: one directory listing per chip (two with `device`) and one read(2) per sensor file, so a
collection grows linearly with the number of sensor files. The files are parsed and their
families built again only when some file reads other bytes than at the previous collection.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    DeviceFilter,
    Families,
    Unchanged,
    open_dir,
    parse_float,
    read_attribute_bytes,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

INVALID_CHARS = re.compile(r"[^a-z0-9:_]")
FILENAME = re.compile(r"^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$")
SENSOR_TYPES = frozenset({"vrm", "beep_enable", "update_interval", "in", "cpu", "fan", "pwm",
                          "temp", "curr", "power", "energy", "humidity", "intrusion", "freq"})
LABELS = ("chip", "sensor")

Sensors = dict[str, dict[str, str]]  # sensor ("temp1") -> property ("input", "" ...) -> value


@functools.lru_cache(maxsize=4096)  # chip, sensor and attribute names recur every cycle
def clean_name(name: str) -> str:
    """node_exporter's cleanMetricName: lower case, [^a-z0-9:_] to _, outer _ trimmed."""
    return INVALID_CHARS.sub("_", name.lower()).strip("_")


@functools.lru_cache(maxsize=4096)  # the same few hundred file names on every cycle
def explode_filename(filename: str) -> tuple[str, int, str] | None:
    """"temp1_crit_alarm" -> ("temp", 1, "crit_alarm"); "pwm2" -> ("pwm", 2, "")."""
    match = FILENAME.match(filename)
    if match is None:
        return None
    number = int(match["id"]) if match["id"] else 0
    return match["type"], number, match["property"] or ""


def _decode(raw: bytes) -> str:
    return raw.decode(errors="replace").strip("\n")


# A directory's sensor files as read: (file name, bytes, or the errno reading it failed with).
SensorFiles = tuple[tuple[str, bytes | int], ...]


def read_sensor_files(directory: str, labels: dict[str, bytes] | None = None) -> SensorFiles:
    """The sensor files of one directory; OSError if it cannot be listed. labels: label
    file -> bytes, kept between calls (a driver's labels are fixed)."""
    files: list[tuple[str, bytes | int]] = []
    with open_dir(directory) as dir_fd:
        for filename in os.listdir(dir_fd):
            parts = explode_filename(filename)
            if parts is None or parts[0] not in SENSOR_TYPES:
                continue
            is_label = labels is not None and parts[2] == "label"
            raw = labels.get(filename) if labels is not None and is_label else None
            if raw is None:
                try:
                    raw = read_attribute_bytes(filename, dir_fd=dir_fd)
                except OSError as exc:  # a directory, or a driver that answers EIO / EAGAIN
                    files.append((filename, exc.errno or 0))
                    continue
                if labels is not None and is_label:
                    labels[filename] = raw
            files.append((filename, raw))
    return tuple(files)


def add_sensor_data(files: SensorFiles, data: Sensors) -> None:
    """Adds the readable ones of a directory's sensor files, the unreadable skipped."""
    for filename, raw in files:
        if isinstance(raw, int):
            continue
        parts = explode_filename(filename)
        assert parts is not None  # read_sensor_files kept only sensor file names
        sensor_type, number, prop = parts
        data.setdefault(f"{sensor_type}{number}", {})[prop] = _decode(raw)


def _read_name(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, "name"), "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return clean_name(raw.decode(errors="replace")) or None


def chip_name(directory: str) -> str | None:
    """A stable name for the chip: the device's bus and address (platform_coretemp_0), else
    the `name` file, else the hwmonN directory name."""
    try:
        device = os.path.realpath(os.path.join(directory, "device"), strict=True)
    except OSError:
        device = None
    if device is not None:
        prefix, dev_name = os.path.split(device)
        dev_type = os.path.basename(prefix.rstrip("/"))
        clean_dev, clean_type = clean_name(dev_name), clean_name(dev_type)
        if clean_type and clean_dev:
            return f"{clean_type}_{clean_dev}"
        if clean_dev:
            return clean_dev
    named = _read_name(directory)
    if named:
        return named
    try:
        real = os.path.realpath(directory, strict=True)
    except OSError:
        return None
    return clean_name(os.path.basename(real)) or None


def sensor_families(chip: str, data: Sensors, out: Families,
                    sensor_filter: DeviceFilter) -> None:
    for sensor in sorted(data):
        if sensor_filter.ignored(f"{chip};{sensor}"):
            continue
        values = data[sensor]
        parts = explode_filename(sensor)
        sensor_type = parts[0] if parts else sensor
        labels = [chip, sensor]
        if "label" in values:
            out.add("node_hwmon_sensor_label", "Label for given chip and sensor",
                    ("chip", "sensor", "label"), [chip, sensor, values["label"]], 1.0)
        if sensor_type == "beep_enable":
            out.add("node_hwmon_beep_enabled", "Hardware beep enabled", LABELS, labels,
                    1.0 if values.get("") == "1" else 0.0)
            continue
        if sensor_type in ("vrm", "update_interval"):
            parsed = parse_float(values.get("", ""))
            if parsed is None:
                continue
            if sensor_type == "vrm":
                out.add("node_hwmon_voltage_regulator_version", "Hardware voltage regulator",
                        LABELS, labels, parsed)
            else:
                out.add("node_hwmon_update_interval_seconds", "Hardware monitor update interval",
                        LABELS, labels, parsed * 0.001)
            continue
        for element in sorted(values):
            if element != "label":
                _element(out, sensor_type, element, values, labels)


def _element(out: Families, sensor_type: str, element: str, values: dict[str, str],
             labels: list[str]) -> None:
    name = f"node_hwmon_{sensor_type}"
    if element == "input":
        if "" in values:  # both tempN and tempN_input: the latter keeps its suffix
            name += "_input"
    elif element:
        name += "_" + clean_name(element)
    value = parse_float(values[element])
    if value is None:
        return
    if element in ("fault", "alarm"):
        out.add(name, f"Hardware sensor {element} status ({sensor_type})", LABELS, labels, value)
    elif element == "beep":
        out.add(name + "_enabled", "Hardware monitor sensor has beeping enabled", LABELS, labels,
                value)
    elif sensor_type in ("in", "cpu"):
        out.add(name + "_volts", f"Hardware monitor for voltage ({element})", LABELS, labels,
                value * 0.001)
    elif sensor_type == "temp" and element != "type":
        out.add(name + "_celsius", f"Hardware monitor for temperature ({element or 'input'})",
                LABELS, labels, value * 0.001)
    elif sensor_type == "curr":
        out.add(name + "_amps", f"Hardware monitor for current ({element})", LABELS, labels,
                value * 0.001)
    elif sensor_type == "energy":
        out.add(name + "_joule_total", f"Hardware monitor for joules used so far ({element})",
                LABELS, labels, value / 1000000.0, counter=True)
    elif sensor_type == "power" and element == "accuracy":
        out.add(name, "Hardware monitor power meter accuracy, as a ratio", LABELS, labels,
                value / 1000000.0)
    elif sensor_type == "power" and element in ("average_interval", "average_interval_min",
                                                "average_interval_max"):
        out.add(name + "_seconds", f"Hardware monitor power usage update interval ({element})",
                LABELS, labels, value * 0.001)
    elif sensor_type == "power":
        out.add(name + "_watt", f"Hardware monitor for power usage in watts ({element})",
                LABELS, labels, value / 1000000.0)
    elif sensor_type == "humidity":
        out.add(name, "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get "
                f"the humidity as a percentage) ({element})", LABELS, labels, value / 1000000.0)
    elif sensor_type == "fan" and element in ("input", "min", "max", "target"):
        out.add(name + "_rpm", f"Hardware monitor for fan revolutions per minute ({element})",
                LABELS, labels, value)
    elif sensor_type == "freq" and element == "input":
        # As node_exporter: only labelled frequency inputs, the label standing for the sensor.
        if "label" in values:
            out.add(name + "_freq_mhz", "Hardware monitor for GPU frequency in MHz", LABELS,
                    [labels[0], clean_name(values["label"])], value / 1000000.0)
    else:
        out.add(name, f"Hardware monitor {sensor_type} element {element}", LABELS, labels,
                value)


class _Chip:
    """What does not change while a chip's /sys/class/hwmon entry stays the same: whether it
    is a directory, its name, its human-readable name, whether it has a device directory,
    its sensor labels."""

    __slots__ = ("device_labels", "has_device", "human", "is_dir", "labels", "name")

    def __init__(self, directory: str) -> None:
        self.is_dir = os.path.isdir(directory)
        self.name = chip_name(directory) if self.is_dir else None
        self.human = _read_name(directory) if self.name is not None else None
        self.has_device = os.path.exists(f"{directory}/device")
        self.labels: dict[str, bytes] = {}
        self.device_labels: dict[str, bytes] = {}


class HwmonCollector:
    def __init__(self, sysfs: Path, chip_filter: DeviceFilter,
                 sensor_filter: DeviceFilter) -> None:
        self._class_hwmon = str(sysfs / "class" / "hwmon")
        self._chips = chip_filter
        self._sensors = sensor_filter
        # (entry name, inode) -> chip: a chip registered again gets a new entry (sysfs
        # creates a new node, with a new inode, under the same hwmonN name).
        self._known: dict[tuple[str, int], _Chip] = {}
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def _entries(self) -> list[tuple[str, _Chip]]:
        try:
            with os.scandir(self._class_hwmon) as scan:
                entries = sorted((e.name, e.inode()) for e in scan)
        except FileNotFoundError:
            return []
        known: dict[tuple[str, int], _Chip] = {}
        out = []
        for key in entries:
            directory = f"{self._class_hwmon}/{key[0]}"
            chip = self._known.get(key) or _Chip(directory)
            known[key] = chip
            if chip.is_dir:
                out.append((directory, chip))
        self._known = known
        return out

    def _read(self) -> tuple[tuple[str, str | None, SensorFiles, SensorFiles], ...]:
        """(chip, human-readable name, its sensor files, its device directory's) of each chip
        not filtered out."""
        chips = []
        for directory, known in self._entries():
            chip = known.name
            if chip is None or self._chips.ignored(chip):
                continue
            try:
                files = read_sensor_files(directory, known.labels)
                device = (read_sensor_files(f"{directory}/device", known.device_labels)
                          if known.has_device else ())
            except OSError:  # the chip went away while being read
                continue
            chips.append((chip, known.human, files, device))
        return tuple(chips)

    def collect(self) -> list[Metric]:
        raw = self._read()
        return self._unchanged.get(raw, lambda: self._build(raw))

    def _build(self, raw: tuple[tuple[str, str | None, SensorFiles, SensorFiles], ...]
               ) -> list[Metric]:
        out = Families()
        for chip, human, files, device in raw:
            data: Sensors = {}
            add_sensor_data(files, data)
            add_sensor_data(device, data)
            if human is not None:
                out.add("node_hwmon_chip_names", "Annotation metric for human-readable chip names",
                        ("chip", "chip_name"), [chip, human], 1.0)
            sensor_families(chip, data, out, self._sensors)
        return out.result()


def create(context: Context, settings: Any) -> HwmonCollector:
    return HwmonCollector(context.sysfs,
                          DeviceFilter(settings.chip_include, settings.chip_exclude),
                          DeviceFilter(settings.sensor_include, settings.sensor_exclude))
