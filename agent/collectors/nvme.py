"""nvme: node_nvme_info and node_nvme_namespace_* from /sys/class/nvme, as node_exporter's
latest release. A value that cannot be read counts as 0 (and ana_state as "unknown"), as
there."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, parse_int, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NAMESPACE = re.compile(r"nvme[0-9]+c[0-9]+n([0-9]+)")
# glob's nvme[0-9]*c[0-9]*n[0-9]*, matched against a listing (glob's machinery costs more).
NAMESPACE_DIR = re.compile(r"nvme[0-9].*c[0-9].*n[0-9]", re.DOTALL)
DEVICE_LABELS = ["device", "nsid"]


# A controller's firmware_rev, model, serial, state and cntlid, and of each namespace its
# directory name, nuse, size, logical_block_size and ana_state: as read, None if unreadable.
ControllerRaw = tuple[tuple[str | None, ...], tuple[tuple[str, tuple[str | None, ...]], ...]]
CONTROLLER_FILES = ("firmware_rev", "model", "serial", "state", "cntlid")
NAMESPACE_FILES = ("nuse", "size", os.path.join("queue", "logical_block_size"), "ana_state")


def _uint(text: str | None) -> int:
    value = None if text is None else parse_int(text)
    return value if value is not None and value >= 0 else 0


def read_controller(path: str) -> ControllerRaw:
    try:
        names = os.listdir(path)
    except OSError:
        names = []
    namespaces = sorted(os.path.join(path, name) for name in names if NAMESPACE_DIR.match(name))
    return (tuple(read_text(os.path.join(path, name)) for name in CONTROLLER_FILES),
            tuple((os.path.basename(namespace),
                   tuple(read_text(os.path.join(namespace, name)) for name in NAMESPACE_FILES))
                  for namespace in namespaces))


class NvmeCollector:
    def __init__(self, sysfs: Path) -> None:
        self._class_dir = str(sysfs / "class" / "nvme")
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def _read(self) -> tuple[tuple[str, ControllerRaw], ...]:
        try:
            devices = sorted(os.listdir(self._class_dir))
        except FileNotFoundError:
            return ()
        return tuple((device, read_controller(os.path.join(self._class_dir, device)))
                     for device in devices if os.path.isdir(os.path.join(self._class_dir, device)))

    def collect(self) -> list[Metric]:
        raw = self._read()
        return self._unchanged.get(raw, lambda: nvme_families(raw))


def nvme_families(controllers: tuple[tuple[str, ControllerRaw], ...]) -> list[Metric]:
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
    for device, (texts, namespaces) in controllers:
        firmware, model, serial, state, cntlid = texts
        info.add_metric([device, firmware or "", model or "", serial or "", state or "",
                         str(_uint(cntlid))], 1.0)
        for name, (nuse_text, size_text, lba_text, ana) in namespaces:
            match = NAMESPACE.search(name)
            if match is None:
                continue
            nsid = match[1]
            nuse, nsze, lba = _uint(nuse_text), _uint(size_text), _uint(lba_text)
            ns_info.add_metric([device, nsid, "unknown" if ana is None else ana], 1.0)
            capacity.add_metric([device, nsid], float(nsze * lba))
            size.add_metric([device, nsid], float(nsze))
            used.add_metric([device, nsid], float(nuse * lba))
            block.add_metric([device, nsid], float(lba))
    return [f for f in (info, ns_info, capacity, size, used, block) if f.samples]


def create(context: Context, settings: Any) -> NvmeCollector:
    return NvmeCollector(context.sysfs)
