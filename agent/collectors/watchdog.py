"""watchdog: node_watchdog_* from /sys/class/watchdog, as node_exporter's latest release.
An attribute the driver does not provide is left out (its info label empty)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, parse_int, read_attribute

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# (metric suffix, attribute), in node_exporter's order.
NUMBERS = (("bootstatus", "bootstatus"), ("fw_version", "fw_version"),
           ("nowayout", "nowayout"), ("timeleft_seconds", "timeleft"),
           ("timeout_seconds", "timeout"), ("pretimeout_seconds", "pretimeout"),
           ("access_cs0", "access_cs0"))
INFO = ("options", "identity", "state", "status", "pretimeout_governor")


def read_watchdogs(class_dir: str) -> dict[str, dict[str, str]]:
    try:
        names = sorted(os.listdir(class_dir))
    except FileNotFoundError:
        return {}
    watchdogs = {}
    for name in names:
        directory = os.path.join(class_dir, name)
        attributes = {}
        for attribute in (*(a for _, a in NUMBERS), *INFO):
            value = read_attribute(os.path.join(directory, attribute))
            if value is not None:
                attributes[attribute] = value
        watchdogs[name] = attributes
    return watchdogs


def watchdog_families(watchdogs: dict[str, dict[str, str]]) -> list[Metric]:
    numbers = {suffix: GaugeMetricFamily(
        f"node_watchdog_{suffix}", f"Value of /sys/class/watchdog/<watchdog>/{attribute}",
        labels=["name"]) for suffix, attribute in NUMBERS}
    info = GaugeMetricFamily("node_watchdog_info", "Info of /sys/class/watchdog/<watchdog>",
                             labels=["name", *INFO])
    for name, attributes in watchdogs.items():
        for suffix, attribute in NUMBERS:
            value = parse_int(attributes.get(attribute, ""))
            if value is not None:
                numbers[suffix].add_metric([name], float(value))
        info.add_metric([name, *(attributes.get(label, "") for label in INFO)], 1.0)
    return [f for f in (*numbers.values(), info) if f.samples]


class WatchdogCollector:
    def __init__(self, sysfs: Path) -> None:
        self._class_dir = str(sysfs / "class" / "watchdog")
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        watchdogs = read_watchdogs(self._class_dir)
        raw = tuple((name, tuple(attributes.items())) for name, attributes in watchdogs.items())
        return self._unchanged.get(raw, lambda: watchdog_families(watchdogs))


def create(context: Context, settings: Any) -> WatchdogCollector:
    return WatchdogCollector(context.sysfs)
