"""tapestats: node_tape_* per SCSI tape drive from /sys/class/scsi_tape/st*/stats, as
node_exporter's latest release.

Only the st<N> entries (the n-, a-, l- and m-variants are the same drive) are read. A stats
file the driver lacks counts as 0, as procfs does; a drive with an unreadable or non-numeric
stats file is left out (node_exporter fails the collector), the other drives kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.common import go_order, open_dir, read_attribute_bytes

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

DRIVE = re.compile(r"^st[0-9]+$")
_GO_UINT = re.compile(r"0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[1-9][0-9]*|0")
NS = 0.000000001

# (stats file, metric name, help, scale), in node_exporter's order; io_now is the gauge.
COUNTERS = (
    ("io_ns", "node_tape_io_time_seconds",
     "The amount of time spent waiting for all I/O to complete (including read and write). "
     "This includes tape movement commands such as seeking between file or set marks and "
     "implicit tape movement such as when rewind on close tape devices are used.", NS),
    ("other_cnt", "node_tape_io_others",
     "The number of I/Os issued to the tape drive other than read or write commands. The time "
     "taken to complete these commands uses the following calculation "
     "io_time_seconds_total-read_time_seconds_total-write_time_seconds_total", 1.0),
    ("read_byte_cnt", "node_tape_read_bytes", "The number of bytes read from the tape drive.",
     1.0),
    ("read_cnt", "node_tape_reads_completed",
     "The number of read requests issued to the tape drive.", 1.0),
    ("read_ns", "node_tape_read_time_seconds",
     "The amount of time spent waiting for read requests to complete.", NS),
    ("resid_cnt", "node_tape_residual",
     "The number of times during a read or write we found the residual amount to be non-zero. "
     "This should mean that a program is issuing a read larger thean the block size on tape. "
     "For write not all data made it to tape.", 1.0),
    ("write_byte_cnt", "node_tape_written_bytes",
     "The number of bytes written to the tape drive.", 1.0),
    ("write_cnt", "node_tape_writes_completed",
     "The number of write requests issued to the tape drive.", 1.0),
    ("write_ns", "node_tape_write_time_seconds",
     "The amount of time spent waiting for write requests to complete.", NS),
)
FILES = frozenset(("in_flight", *(file for file, _, _, _ in COUNTERS)))


def parse_uint(text: str) -> int | None:
    """Go's strconv.ParseUint(text, 0, 64); None if not a number."""
    if not _GO_UINT.fullmatch(text):
        return None
    octal = len(text) > 1 and text[0] == "0" and text[1].isdigit()  # Go's "052"
    value = int(text, 8) if octal else int(text, 0)
    return value if value < 2**64 else None


def read_stats(directory: str) -> dict[str, int] | None:
    """The drive's stats (missing files 0), or None when one cannot be read or parsed."""
    values = dict.fromkeys(FILES, 0)
    try:
        directory_fd = open_dir(directory)
    except OSError:
        return None
    with directory_fd as dir_fd:  # files opened relative to it: no path resolution each
        for name in os.listdir(dir_fd):
            try:
                text = read_attribute_bytes(name, dir_fd=dir_fd).decode(errors="replace").strip()
            except OSError:
                return None
            if name in FILES:
                value = parse_uint(text)
                if value is None:
                    return None
                values[name] = value
    return values


class TapestatsCollector:
    def __init__(self, sysfs: Path, ignored_devices: str = "^$") -> None:
        self._class_dir = str(sysfs / "class" / "scsi_tape")
        self._ignored = re.compile(ignored_devices)

    def collect(self) -> list[Metric]:
        try:
            names = sorted(n for n in os.listdir(self._class_dir) if DRIVE.match(n))
        except OSError:
            return []
        io_now = GaugeMetricFamily("node_tape_io_now",
                                   "The number of I/Os currently outstanding to this device.",
                                   labels=["device"])
        counters = {file: CounterMetricFamily(name, help_text, labels=["device"])
                    for file, name, help_text, _ in COUNTERS}
        for name in names:
            if self._ignored.search(name):
                continue
            stats = read_stats(os.path.join(self._class_dir, name, "stats"))
            if stats is None:
                continue
            io_now.add_metric([name], float(stats["in_flight"]))
            for file, _, _, scale in COUNTERS:
                counters[file].add_metric([name], float(stats[file]) * scale)
        return go_order((io_now, *counters.values()))


def create(context: Context, settings: Any) -> TapestatsCollector:
    return TapestatsCollector(context.sysfs, settings.ignored_devices)
