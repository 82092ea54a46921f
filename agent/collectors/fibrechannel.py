"""fibrechannel: node_fibrechannel_* from /sys/class/fc_host, as node_exporter's latest release.

An attribute the driver does not expose is an empty info label and a counter file that is
missing is no series (the latest release; 1.5 failed the collector or reported 0). A counter
reading 0xffffffffffffffff is one the HBA firmware does not implement: left out, as there. A
host with an unreadable attribute or a counter that is not a number is left out whole
(node_exporter fails the collector for it); the other hosts are kept.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, go_order, read_attribute_bytes

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# Info labels after fc_host, in node_exporter's order, and the attributes holding "0x"-prefixed
# names whose prefix procfs cuts.
INFO = ("speed", "port_state", "port_type", "port_id", "port_name", "fabric_name",
        "symbolic_name", "supported_classes", "supported_speeds", "dev_loss_tmo")
HEX_NAMES = frozenset(("port_id", "port_name", "fabric_name"))

# (metric name, statistics file, help), in node_exporter's order.
COUNTERS = (
    ("dumped_frames", "dumped_frames", "Number of dumped frames"),
    ("error_frames", "error_frames", "Number of errors in frames"),
    ("invalid_crc", "invalid_crc_count", "Invalid Cyclic Redundancy Check count"),
    ("rx_frames", "rx_frames", "Number of frames received"),
    ("rx_words", "rx_words", "Number of words received by host port"),
    ("tx_frames", "tx_frames", "Number of frames transmitted by host port"),
    ("tx_words", "tx_words", "Number of words transmitted by host port"),
    ("seconds_since_last_reset", "seconds_since_last_reset",
     "Number of seconds since last host port reset"),
    ("invalid_tx_words", "invalid_tx_word_count",
     "Number of invalid words transmitted by host port"),
    ("link_failure", "link_failure_count", "Number of times the host port link has failed"),
    ("loss_of_sync", "loss_of_sync_count",
     "Number of failures on either bit or transmission word boundaries"),
    ("loss_of_signal", "loss_of_signal_count", "Number of times signal has been lost"),
    ("nos", "nos_count", "Number Not_Operational Primitive Sequence received by host port"),
    ("fcp_packet_aborts", "fcp_packet_aborts", "Number of aborted packets"),
)
UNIMPLEMENTED = 2**64 - 1
# Write-only or unsupported statistics files answer these; procfs skips them.
SKIPPED_ERRORS = frozenset((errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL))

_GO_UINT = re.compile(r"0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[1-9][0-9]*|0")


class HostError(Exception):
    """A host procfs would refuse to parse."""


def parse_uint(text: str) -> int:
    """Go's strconv.ParseUint(text, 0, 64): decimal, 0x hex, 0/0o octal or 0b binary."""
    if not _GO_UINT.fullmatch(text):
        raise HostError(f"not a number: {text!r}")
    octal = len(text) > 1 and text[0] == "0" and text[1].isdigit()  # Go's "052"
    value = int(text, 8) if octal else int(text, 0)
    if value > UNIMPLEMENTED:
        raise HostError(f"out of range: {text!r}")
    return value


# Raw input: each file as its bytes or the errno reading it failed with; a host's
# (attributes by name, statistics/: errno if unlistable, else (file, bytes or errno)).
Read = bytes | int
HostRaw = tuple[tuple[tuple[str, Read], ...], int | tuple[tuple[str, Read], ...]]
WANTED = frozenset(file for _, file, _ in COUNTERS)


def _read(path: str) -> Read:
    try:
        return read_attribute_bytes(path)
    except OSError as exc:
        return exc.errno or 0


def read_host_raw(directory: str) -> HostRaw:
    attributes = tuple((name, _read(os.path.join(directory, name))) for name in INFO)
    try:
        entries = sorted(os.scandir(os.path.join(directory, "statistics")),
                         key=lambda e: e.name)
    except OSError as exc:
        return attributes, exc.errno or 0
    return attributes, tuple((e.name, _read(e.path)) for e in entries
                             if e.name in WANTED and e.is_file(follow_symlinks=False))


def parse_host(raw: HostRaw) -> tuple[dict[str, str], dict[str, int]]:
    """(attributes the driver exposes, statistics counters by file name)."""
    attribute_files, statistics = raw
    attributes: dict[str, str] = {}
    for name, read in attribute_files:
        if read == errno.ENOENT:
            continue
        if isinstance(read, int):
            raise HostError(f"{name}: {os.strerror(read)}")
        value = read.decode(errors="replace").strip()
        attributes[name] = value[2:] if name in HEX_NAMES and len(value) > 2 else value
    counters: dict[str, int] = {}
    if statistics == errno.ENOENT:
        return attributes, counters
    if isinstance(statistics, int):
        raise HostError(f"statistics: {os.strerror(statistics)}")
    for name, read in statistics:
        if isinstance(read, int):
            if read in SKIPPED_ERRORS:
                continue
            raise HostError(f"{name}: {os.strerror(read)}")
        counters[name] = parse_uint(read.decode(errors="replace").strip())
    return attributes, counters


class FibreChannelCollector:
    def __init__(self, sysfs: Path) -> None:
        self._class_dir = str(sysfs / "class" / "fc_host")
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def _read(self) -> tuple[tuple[str, HostRaw], ...] | None:
        try:
            hosts = sorted(os.listdir(self._class_dir))
        except OSError:
            return None
        return tuple((host, read_host_raw(os.path.join(self._class_dir, host)))
                     for host in hosts)

    def collect(self) -> list[Metric]:
        raw = self._read()
        if raw is None:
            return []
        return self._unchanged.get(raw, lambda: fibrechannel_families(raw))


def fibrechannel_families(hosts: tuple[tuple[str, HostRaw], ...]) -> list[Metric]:
    info = GaugeMetricFamily(
        "node_fibrechannel_info",
        "Non-numeric data from /sys/class/fc_host/<host>, value is always 1.",
        labels=["fc_host", *INFO])
    counters = {file: CounterMetricFamily(f"node_fibrechannel_{name}", help_text,
                                          labels=["fc_host"])
                for name, file, help_text in COUNTERS}
    for host, raw in hosts:
        try:
            attributes, values = parse_host(raw)
        except HostError:
            continue
        info.add_metric([host, *(attributes.get(name, "") for name in INFO)], 1.0)
        for file, value in values.items():
            if value != UNIMPLEMENTED:
                counters[file].add_metric([host], float(value))
    return go_order((info, *counters.values()))


def create(context: Context, settings: Any) -> FibreChannelCollector:
    return FibreChannelCollector(context.sysfs)
