"""selinux: node_selinux_* as node_exporter's latest release: whether SELinux is enabled and,
where it is, the configured and current enforcement modes (1 enforcing, 0 permissive,
-1 disabled). A host without selinuxfs reports node_selinux_enabled 0."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

MODES = {"enforcing": 1.0, "permissive": 0.0, "disabled": -1.0}


def config_mode(text: str) -> float:
    """The SELINUX= line of /etc/selinux/config; disabled when absent."""
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "SELINUX":
            return MODES.get(value.strip().strip('"').lower(), -1.0)
    return -1.0


class SelinuxCollector:
    def __init__(self, sysfs: Path, rootfs: Path) -> None:
        self._enforce = sysfs / "fs" / "selinux" / "enforce"
        self._config = rootfs / "etc" / "selinux" / "config"

    def collect(self) -> list[Metric]:
        enabled = GaugeMetricFamily("node_selinux_enabled",
                                    "SELinux is enabled, 1 is true, 0 is false")
        enforce = read_text(self._enforce)
        if enforce is None:
            enabled.add_metric([], 0.0)
            return [enabled]
        enabled.add_metric([], 1.0)
        configured = GaugeMetricFamily("node_selinux_config_mode",
                                       "Configured SELinux enforcement mode")
        configured.add_metric([], config_mode(read_text(self._config) or ""))
        current = GaugeMetricFamily("node_selinux_current_mode",
                                    "Current SELinux enforcement mode")
        current.add_metric([], 1.0 if enforce == "1" else 0.0)
        return [configured, current, enabled]


def create(context: Context, settings: Any) -> SelinuxCollector:
    return SelinuxCollector(context.sysfs, context.rootfs)
