"""arp: node_arp_entries{device}, the number of /proc/net/arp entries per device."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import DeviceFilter

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

HEADER_FIELDS = 9  # 'IP address  HW type  Flags  HW address  Mask  Device'
ENTRY_FIELDS = 6


def parse_arp(text: str) -> dict[str, int]:
    """/proc/net/arp -> {device: number of entries}, incomplete entries included."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) in (0, HEADER_FIELDS):
            continue
        if len(fields) != ENTRY_FIELDS:
            raise ValueError(f"invalid /proc/net/arp line: {line!r}")
        counts[fields[-1]] += 1
    return dict(counts)


class ArpCollector:
    def __init__(self, procfs: Path, device_include: str | None,
                 device_exclude: str | None) -> None:
        self._arp = procfs / "net" / "arp"
        self._filter = DeviceFilter(device_include, device_exclude)

    def collect(self) -> list[Metric]:
        counts = parse_arp(self._arp.read_text())
        return arp_families({d: n for d, n in counts.items() if not self._filter.ignored(d)})


def arp_families(counts: dict[str, int]) -> list[Metric]:
    family = GaugeMetricFamily("node_arp_entries", "ARP entries by device", labels=["device"])
    for device in sorted(counts):
        family.add_metric([device], float(counts[device]))
    return [family] if family.samples else []


def create(context: Context, settings: Any) -> ArpCollector:
    return ArpCollector(context.procfs, settings.device_include, settings.device_exclude)
