"""buddyinfo: node_buddyinfo_blocks{node,zone,size} from /proc/buddyinfo, as node_exporter's
buddyinfo collector (off by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, parse_float

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def parse_buddyinfo(text: str) -> list[tuple[str, str, list[float]]]:
    """(node, zone, free blocks per order) per line "Node 0, zone   Normal  4381 1093 ...";
    every line must have as many orders as the first, as procfs requires."""
    entries = []
    buckets = -1
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            raise ValueError("invalid number of fields when parsing buddyinfo")
        node, zone = parts[1].rstrip(","), parts[3].rstrip(",")
        if buckets == -1:
            buckets = len(parts) - 4
        elif buckets != len(parts) - 4:
            raise ValueError(f"mismatch in number of buddyinfo buckets, previous count "
                             f"{buckets}, new count {len(parts) - 4}")
        sizes = []
        for text_value in parts[4:]:
            value = parse_float(text_value)
            if value is None:
                raise ValueError(f"invalid value in buddyinfo: {text_value!r}")
            sizes.append(value)
        entries.append((node, zone, sizes))
    return entries


def buddyinfo_families(entries: list[tuple[str, str, list[float]]]) -> list[Metric]:
    families = Families()
    for node, zone, sizes in entries:
        for size, value in enumerate(sizes):
            families.add("node_buddyinfo_blocks", "Count of free blocks according to size.",
                         ["node", "zone", "size"], [node, zone, str(size)], value)
    return families.result()


class BuddyinfoCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "buddyinfo"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return buddyinfo_families(parse_buddyinfo(text))


def create(context: Context, settings: Any) -> BuddyinfoCollector:
    return BuddyinfoCollector(context.procfs)
