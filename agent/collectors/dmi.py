"""dmi: node_dmi_info from /sys/class/dmi/id (BIOS, board, chassis, product), as
node_exporter's latest release. An attribute only root may read (serials, uuid) is left out
of the labels; one that exists but is empty is an empty label."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import read_attribute_bytes

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# label -> file in /sys/class/dmi/id
LABELS = {
    "bios_date": "bios_date", "bios_release": "bios_release", "bios_vendor": "bios_vendor",
    "bios_version": "bios_version", "board_asset_tag": "board_asset_tag",
    "board_name": "board_name", "board_serial": "board_serial", "board_vendor": "board_vendor",
    "board_version": "board_version", "chassis_asset_tag": "chassis_asset_tag",
    "chassis_serial": "chassis_serial", "chassis_vendor": "chassis_vendor",
    "chassis_version": "chassis_version", "product_family": "product_family",
    "product_name": "product_name", "product_serial": "product_serial",
    "product_sku": "product_sku", "product_uuid": "product_uuid",
    "product_version": "product_version", "system_vendor": "sys_vendor",
}
HELP = ("A metric with a constant '1' value labeled by " + ", ".join(LABELS)
        + " if provided by DMI.")


def read_dmi(directory: str) -> dict[str, str] | None:
    """label -> value of the readable attributes; None without /sys/class/dmi/id."""
    if not os.path.isdir(directory):
        return None
    labels = {}
    for label, name in LABELS.items():
        try:
            raw = read_attribute_bytes(os.path.join(directory, name))
        except OSError:
            continue
        labels[label] = raw.decode(errors="replace").strip()
    return labels


class DmiCollector:
    """Reads DMI once, as node_exporter does: it does not change until the next boot."""

    def __init__(self, sysfs: Path) -> None:
        self._directory = str(sysfs / "class" / "dmi" / "id")
        self._labels: dict[str, str] | None = None
        self._read = False

    def collect(self) -> list[Metric]:
        if not self._read:
            self._labels, self._read = read_dmi(self._directory), True
        labels = self._labels
        if labels is None:
            return []
        family = GaugeMetricFamily("node_dmi_info", HELP, labels=list(labels))
        family.add_metric(list(labels.values()), 1.0)
        return [family]


def create(context: Context, settings: Any) -> DmiCollector:
    return DmiCollector(context.sysfs)
