"""softnet: per-CPU packet processing counters from /proc/net/softnet_stat, as node_exporter's
latest release reads them (procfs): one line per online CPU's softnet_data, in hex.

The columns a line has depend on the kernel: 9 (Linux 2.6.23: processed, dropped,
time_squeezed, five zeros, cpu_collision), 10 (2.6.39: + received_rps), 11 (4.18: +
flow_limit_count), 13 (5.14: + backlog length and the CPU's id). The cpu label is that id where
the line has it, else the line's position; a column the line lacks reads 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client.metrics_core import Metric

from agent.collectors.common import family, sample
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

MIN_COLUMNS = 9
UINT32_MAX = 0xFFFFFFFF
_HEX = re.compile(r"[0-9a-fA-F]+")


class Softnet(NamedTuple):
    processed: int
    dropped: int
    times_squeezed: int
    cpu_collision: int = 0
    received_rps: int = 0
    flow_limit_count: int = 0
    backlog_len: int = 0
    cpu: int = 0


def _hex32(text: str) -> int:
    value = int(text, 16) if _HEX.fullmatch(text) else -1
    if not 0 <= value <= UINT32_MAX:
        raise ValueError(f"not a 32-bit hexadecimal value in softnet_stat: {text!r}")
    return value


def parse_softnet(text: str) -> list[Softnet]:
    stats = []
    for position, line in enumerate(text.splitlines()):
        columns = line.split()
        width = len(columns)
        if width < MIN_COLUMNS:
            raise ValueError(f"{width} columns in softnet_stat, expected {MIN_COLUMNS}+")
        processed, dropped, squeezed, *_, collision = (_hex32(c) for c in columns[:9])
        rps = _hex32(columns[9]) if width >= 10 else 0
        flow_limit = _hex32(columns[10]) if width >= 11 else 0
        if width >= 13:
            backlog, index = _hex32(columns[11]), _hex32(columns[12])
        else:
            backlog, index = 0, position
        stats.append(Softnet(processed, dropped, squeezed, collision, rps, flow_limit, backlog,
                             index))
    return stats


class SoftnetCollector:
    def __init__(self, procfs: Path) -> None:
        self._softnet_stat = str(procfs / "net" / "softnet_stat")
        self._files = HeldFiles()

    def collect(self) -> list[Metric]:
        return softnet_families(parse_softnet(self._files.read(self._softnet_stat).decode()))


# (Softnet field, metric name, help, type), in the order of the metric names.
FAMILIES = (
    ("backlog_len", "node_softnet_backlog_len", "Softnet backlog status", "gauge"),
    ("cpu_collision", "node_softnet_cpu_collision",
     "Number of collision occur while obtaining device lock while transmitting", "counter"),
    ("dropped", "node_softnet_dropped", "Number of dropped packets", "counter"),
    ("flow_limit_count", "node_softnet_flow_limit_count",
     "Number of times flow limit has been reached", "counter"),
    ("processed", "node_softnet_processed", "Number of processed packets", "counter"),
    ("received_rps", "node_softnet_received_rps", "Number of times cpu woken up received_rps",
     "counter"),
    ("times_squeezed", "node_softnet_times_squeezed",
     "Number of times processing packets ran out of quota", "counter"),
)


def softnet_families(stats: list[Softnet]) -> list[Metric]:
    families = []
    for field, name, help_text, typ in FAMILIES:
        sample_name = name + "_total" if typ == "counter" else name
        families.append(family(name, help_text, typ, [
            sample(sample_name, {"cpu": str(stat.cpu)}, getattr(stat, field))
            for stat in stats]))
    return families


def create(context: Context, settings: Any) -> SoftnetCollector:
    return SoftnetCollector(context.procfs)
