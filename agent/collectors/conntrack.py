"""conntrack: node_nf_conntrack_* from procfs, as node_exporter 1.5.

Without the nf_conntrack module the files are missing and nothing is reported; that is not
an error. As in node_exporter, what was read before the first missing file is still reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Singles, Unchanged, gauge
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# /proc/net/stat/nf_conntrack column -> (metric suffix, help); summed over the per-CPU lines.
STATS: dict[int, tuple[str, str]] = {
    2: ("found", "Number of searched entries which were successful."),
    4: ("invalid", "Number of packets seen which can not be tracked."),
    5: ("ignore", "Number of packets seen which are already connected to a conntrack entry."),
    8: ("insert", "Number of entries inserted into the list."),
    9: ("insert_failed", "Number of entries for which list insertion was attempted but failed."),
    10: ("drop", "Number of packets dropped due to conntrack failure."),
    11: ("early_drop", "Number of dropped conntrack entries to make room for new ones, "
                       "if maximum table size was reached."),
    16: ("search_restart", "Number of conntrack table lookups which had to be restarted due "
                           "to hashtable resizes."),
}
STAT_FIELDS = 17
_STAT_FAMILIES = [(key, f"node_nf_conntrack_stat_{key}", help_text)
                  for key, help_text in STATS.values()]


def parse_conntrack_stat(text: str) -> dict[str, int]:
    """The per-CPU hexadecimal lines after the header -> {'found': total, ...}."""
    totals = dict.fromkeys((name for name, _ in STATS.values()), 0)
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) != STAT_FIELDS:
            raise ValueError(f"invalid conntrack stat line, expected {STAT_FIELDS} fields: "
                             f"{line!r}")
        for column, (name, _) in STATS.items():
            totals[name] += int(fields[column], 16)
    return totals


class ConntrackCollector:
    def __init__(self, procfs: Path) -> None:
        netfilter = procfs / "sys" / "net" / "netfilter"
        self._count = str(netfilter / "nf_conntrack_count")
        self._max = str(netfilter / "nf_conntrack_max")
        self._stat = str(procfs / "net" / "stat" / "nf_conntrack")
        self._files = HeldFiles()
        # The same bytes: the same families; a family whose value did not change is the
        # same object.
        self._families: Unchanged[list[Metric]] = Unchanged()
        self._singles = Singles()

    def _read(self, path: str) -> bytes | None:
        try:
            return self._files.read(path)
        except FileNotFoundError:
            return None

    def collect(self) -> list[Metric]:
        count = self._read(self._count)
        if count is None:
            return []
        limit = self._read(self._max)
        stat = self._read(self._stat) if limit is not None else None
        raw = (count, limit, stat)
        return self._families.get(raw, lambda: self._build(*raw))

    def _build(self, count: bytes, limit: bytes | None, stat: bytes | None) -> list[Metric]:
        families = conntrack_families(
            int(count.decode()), None if limit is None else int(limit.decode()),
            None if stat is None else parse_conntrack_stat(stat.decode()), self._singles)
        self._singles.done()
        return families


def conntrack_families(entries: int, limit: int | None, stats: dict[str, int] | None,
                       singles: Singles | None = None) -> list[Metric]:
    families: list[Metric] = [gauge(
        "node_nf_conntrack_entries",
        "Number of currently allocated flow entries for connection tracking.", float(entries),
        singles)]
    if limit is not None:
        families.append(gauge("node_nf_conntrack_entries_limit",
                              "Maximum size of connection tracking table.", float(limit),
                              singles))
    if stats is not None:
        families += [gauge(name, help_text, float(stats[key]), singles)
                     for key, name, help_text in _STAT_FAMILIES]
    return families


def create(context: Context, settings: Any) -> ConntrackCollector:
    return ConntrackCollector(context.procfs)
