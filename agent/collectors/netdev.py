"""netdev: node_network_{receive,transmit}_*_total per device, with node_exporter's names.

Counters come from /proc/net/dev; receive_nohandler, which node_exporter reads over netlink
and /proc/net/dev lacks, comes from /sys/class/net/<device>/statistics/rx_nohandler.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import DeviceFilter

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NetStats = dict[str, dict[str, float]]


def parse_net_dev(text: str) -> NetStats:
    """/proc/net/dev -> {device: {'receive_bytes': ..., 'transmit_colls': ...}}.

    Column names come from the two header lines, so they read exactly as node_exporter's.
    """
    lines = text.splitlines()
    header = lines[1].split("|") if len(lines) > 1 else []
    if len(header) != 3:
        raise ValueError(f"invalid /proc/net/dev header: {lines[:2]!r}")
    keys = [f"receive_{column}" for column in header[1].split()]
    keys += [f"transmit_{column}" for column in header[2].split()]
    stats: NetStats = {}
    for line in filter(str.strip, lines[2:]):
        device, _, rest = line.partition(":")
        values = rest.split()
        if len(values) != len(keys):
            raise ValueError(f"invalid /proc/net/dev line: {line!r}")
        stats[device.strip()] = {key: float(value) for key, value in zip(keys, values, strict=True)}
    return stats


class NetdevCollector:
    def __init__(self, procfs: Path, device_include: str | None, device_exclude: str | None,
                 sysfs: Path | None = None) -> None:
        self._net_dev = procfs / "net" / "dev"
        self._sysfs_net = sysfs / "class" / "net" if sysfs is not None else None
        self._filter = DeviceFilter(device_include, device_exclude)

    def collect(self) -> list[Metric]:
        stats = parse_net_dev(self._net_dev.read_text())
        kept = {dev: counters for dev, counters in stats.items() if not self._filter.ignored(dev)}
        for device, counters in kept.items():
            nohandler = self._read_nohandler(device)
            if nohandler is not None:
                counters["receive_nohandler"] = nohandler
        return netdev_families(kept)

    def _read_nohandler(self, device: str) -> float | None:
        if self._sysfs_net is None:
            return None
        try:
            return float((self._sysfs_net / device / "statistics" / "rx_nohandler").read_text())
        except (OSError, ValueError):
            return None


def netdev_families(stats: NetStats) -> list[Metric]:
    families: dict[str, CounterMetricFamily] = {}
    for device, counters in stats.items():
        for key, value in counters.items():
            if key not in families:
                families[key] = CounterMetricFamily(
                    f"node_network_{key}", f"Network device statistic {key}.", labels=["device"])
            families[key].add_metric([device], value)
    return [families[key] for key in sorted(families)]


def create(context: Context, settings: Any) -> NetdevCollector:
    return NetdevCollector(context.procfs, settings.device_include, settings.device_exclude,
                           sysfs=context.sysfs)
