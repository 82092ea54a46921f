"""ksmd: node_ksmd_* from /sys/kernel/mm/ksm, as node_exporter's ksmd collector (off by
default). No ksm directory (a kernel without CONFIG_KSM) is no data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

FILES = ("full_scans", "merge_across_nodes", "pages_shared", "pages_sharing", "pages_to_scan",
         "pages_unshared", "pages_volatile", "run", "sleep_millisecs")


def metric_name(filename: str) -> str:
    if filename == "full_scans":
        return "full_scans_total"
    if filename == "sleep_millisecs":
        return "sleep_seconds"
    return filename


class KsmdCollector:
    def __init__(self, sysfs: Path) -> None:
        self._root = sysfs / "kernel/mm/ksm"

    def collect(self) -> list[Metric]:
        families: list[Metric] = []
        for filename in FILES:
            text = read_text(self._root / filename)
            if text is None or not text.isdigit():
                continue  # merge_across_nodes exists only on NUMA kernels
            value = float(int(text))
            name, help_text = f"node_ksmd_{metric_name(filename)}", f"ksmd '{filename}' file."
            if filename == "full_scans":
                counter = CounterMetricFamily(name, help_text)
                counter.add_metric([], value)
                families.append(counter)
                continue
            if filename == "sleep_millisecs":
                value /= 1000
            families.append(GaugeMetricFamily(name, help_text, value=value))
        return families


def create(context: Context, settings: Any) -> KsmdCollector:
    return KsmdCollector(context.sysfs)
