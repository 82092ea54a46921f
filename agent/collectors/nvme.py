"""nvme: node_nvme_info and node_nvme_namespace_* from /sys/class/nvme, as node_exporter's
latest release. A value that cannot be read counts as 0 (and ana_state as "unknown"), as
there."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import parse_int, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NAMESPACE = re.compile(r"nvme[0-9]+c[0-9]+n([0-9]+)")
DEVICE_LABELS = ["device", "nsid"]


def _uint(path: str) -> int:
    text = read_text(path)
    value = None if text is None else parse_int(text)
    return value if value is not None and value >= 0 else 0


class NvmeCollector:
    def __init__(self, sysfs: Path) -> None:
        self._class_dir = str(sysfs / "class" / "nvme")

    def collect(self) -> list[Metric]:
        try:
            devices = sorted(os.listdir(self._class_dir))
        except FileNotFoundError:
            return []
        info = GaugeMetricFamily(
            "node_nvme_info", "Non-numeric data from /sys/class/nvme/<device>, value is always 1.",
            labels=["device", "firmware_revision", "model", "serial", "state", "cntlid"])
        ns_info = GaugeMetricFamily("node_nvme_namespace_info",
                                    "Information about NVMe namespaces. Value is always 1",
                                    labels=["device", "nsid", "ana_state"])
        capacity = GaugeMetricFamily(
            "node_nvme_namespace_capacity_bytes", "Capacity of the NVMe namespace in bytes. "
            "Computed as namespace_size * namespace_logical_block_size", labels=DEVICE_LABELS)
        size = GaugeMetricFamily(
            "node_nvme_namespace_size_bytes", "Size of the NVMe namespace in bytes. Available "
            "in /sys/class/nvme/<device>/<namespace>/size", labels=DEVICE_LABELS)
        used = GaugeMetricFamily(
            "node_nvme_namespace_used_bytes", "Used space of the NVMe namespace in bytes. "
            "Available in /sys/class/nvme/<device>/<namespace>/nuse", labels=DEVICE_LABELS)
        block = GaugeMetricFamily(
            "node_nvme_namespace_logical_block_size_bytes", "Logical block size of the NVMe "
            "namespace in bytes. Usually 4Kb. Available in "
            "/sys/class/nvme/<device>/<namespace>/queue/logical_block_size",
            labels=DEVICE_LABELS)
        for device in devices:
            path = os.path.join(self._class_dir, device)
            if not os.path.isdir(path):
                continue
            text = {name: read_text(os.path.join(path, name)) or ""
                    for name in ("firmware_rev", "model", "serial", "state")}
            info.add_metric([device, text["firmware_rev"], text["model"], text["serial"],
                             text["state"], str(_uint(os.path.join(path, "cntlid")))], 1.0)
            for namespace in sorted(glob.glob(os.path.join(glob.escape(path),
                                                           "nvme[0-9]*c[0-9]*n[0-9]*"))):
                match = NAMESPACE.search(os.path.basename(namespace))
                if match is None:
                    continue
                nsid = match[1]
                nuse = _uint(os.path.join(namespace, "nuse"))
                nsze = _uint(os.path.join(namespace, "size"))
                lba = _uint(os.path.join(namespace, "queue", "logical_block_size"))
                ana = read_text(os.path.join(namespace, "ana_state"))
                ns_info.add_metric([device, nsid, "unknown" if ana is None else ana], 1.0)
                capacity.add_metric([device, nsid], float(nsze * lba))
                size.add_metric([device, nsid], float(nsze))
                used.add_metric([device, nsid], float(nuse * lba))
                block.add_metric([device, nsid], float(lba))
        return [f for f in (info, ns_info, capacity, size, used, block) if f.samples]


def create(context: Context, settings: Any) -> NvmeCollector:
    return NvmeCollector(context.sysfs)
