"""netdev: node_network_{receive,transmit}_*_total per device, with node_exporter's names.

node_exporter's default reads each interface's rtnl_link_stats64 over netlink; the kernel
exposes the same counters, unmodified, in /sys/class/net/<device>/statistics/, which is read
here (no netlink round trips, one small file per counter). /proc/net/dev, which the netlink
option switched off selects, folds several of them together (drop = rx_dropped +
rx_missed_errors, frame = four error kinds, ...) and lacks receive_nohandler. With
enable_detailed_metrics every counter keeps its own kernel name; without it they are folded
into /proc/net/dev's names, as node_exporter does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import DeviceFilter

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NetStats = dict[str, dict[str, float]]

# /sys/class/net/<device>/statistics file -> node_exporter's netlink name
NETLINK_STATS = {
    "rx_packets": "receive_packets", "tx_packets": "transmit_packets",
    "rx_bytes": "receive_bytes", "tx_bytes": "transmit_bytes",
    "rx_errors": "receive_errors", "tx_errors": "transmit_errors",
    "rx_dropped": "receive_dropped", "tx_dropped": "transmit_dropped",
    "multicast": "multicast", "collisions": "collisions",
    "rx_length_errors": "receive_length_errors", "rx_over_errors": "receive_over_errors",
    "rx_crc_errors": "receive_crc_errors", "rx_frame_errors": "receive_frame_errors",
    "rx_fifo_errors": "receive_fifo_errors", "rx_missed_errors": "receive_missed_errors",
    "tx_aborted_errors": "transmit_aborted_errors",
    "tx_carrier_errors": "transmit_carrier_errors", "tx_fifo_errors": "transmit_fifo_errors",
    "tx_heartbeat_errors": "transmit_heartbeat_errors",
    "tx_window_errors": "transmit_window_errors",
    "rx_compressed": "receive_compressed", "tx_compressed": "transmit_compressed",
    "rx_nohandler": "receive_nohandler",
}
# Without detailed metrics: netlink name -> /proc/net/dev's name, the rest dropped.
LEGACY = {
    "receive_errors": "receive_errs", "transmit_errors": "transmit_errs",
    "receive_dropped": "receive_drop", "transmit_dropped": "transmit_drop",
    "multicast": "receive_multicast", "collisions": "transmit_colls",
    "receive_fifo_errors": "receive_fifo", "transmit_fifo_errors": "transmit_fifo",
    "receive_frame_errors": "receive_frame", "transmit_carrier_errors": "transmit_carrier",
}
LEGACY_DROPPED = frozenset({
    "receive_length_errors", "receive_over_errors", "receive_crc_errors",
    "receive_missed_errors", "transmit_aborted_errors", "transmit_heartbeat_errors",
    "transmit_window_errors"})


def legacy_names(counters: dict[str, float]) -> dict[str, float]:
    return {LEGACY.get(key, key): value for key, value in counters.items()
            if key not in LEGACY_DROPPED}


def read_link_stats(statistics: Path) -> dict[str, float] | None:
    """A device's counters under netlink names; None when it has no statistics directory.
    A counter the kernel does not provide reads as 0, as netlink reports it."""
    if not statistics.is_dir():
        return None
    counters = {}
    for filename, name in NETLINK_STATS.items():
        try:
            counters[name] = float(int((statistics / filename).read_text()))
        except (OSError, ValueError):
            counters[name] = 0.0
    return counters


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
                 sysfs: Path | None = None, netlink: bool = True,
                 detailed: bool = False) -> None:
        self._net_dev = procfs / "net" / "dev"
        self._sysfs_net = sysfs / "class" / "net" if sysfs is not None else None
        self._filter = DeviceFilter(device_include, device_exclude)
        self._netlink = netlink
        self._detailed = detailed

    def collect(self) -> list[Metric]:
        if self._netlink and self._sysfs_net is not None and self._sysfs_net.is_dir():
            return netdev_families(self._link_stats())
        stats = parse_net_dev(self._net_dev.read_text())
        kept = {dev: counters for dev, counters in stats.items() if not self._filter.ignored(dev)}
        return netdev_families(kept)

    def _link_stats(self) -> NetStats:
        assert self._sysfs_net is not None
        stats: NetStats = {}
        for device in sorted(os.listdir(self._sysfs_net)):
            if self._filter.ignored(device):
                continue
            counters = read_link_stats(self._sysfs_net / device / "statistics")
            if counters is not None:
                stats[device] = counters if self._detailed else legacy_names(counters)
        return stats


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
                           sysfs=context.sysfs, netlink=settings.netlink,
                           detailed=settings.enable_detailed_metrics)
