"""slabinfo: node_slabinfo_*{slab} from /proc/slabinfo (version 2.1), as node_exporter's
slabinfo collector (off by default), with its slab name filters. /proc/slabinfo is readable by
root only; no file is no data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import DeviceFilter, go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

_SPACE = re.compile(r"\s+")

# (metric, help, column of the 2.1 line)
COLUMNS = (
    ("active_objects", "The number of objects that are currently active (i.e., in use).", 1),
    ("objects", "The total number of allocated objects (i.e., objects that are both in use "
                "and not in use).", 2),
    ("object_size_bytes", "The size of objects in this slab, in bytes.", 3),
    ("objects_per_slab", "The number of objects stored in each slab.", 4),
    ("pages_per_slab", "The number of pages allocated for each slab.", 5),
)


def parse_slabinfo(text: str) -> list[tuple[str, list[int]]]:
    """(slab name, its 15 numbers) per line; the version and header lines are skipped."""
    slabs = []
    for line in text.splitlines():
        if "slabinfo -" in line or "# name" in line:
            continue
        fields = _SPACE.sub(" ", line).split(" ")
        if len(fields) != 16:
            raise ValueError(f"unable to read: {line!r}")
        try:
            numbers = [int(fields[i]) for i in (1, 2, 3, 4, 5, 8, 9, 10, 13, 14, 15)]
        except ValueError:
            raise ValueError(f"unable to read: {line!r}") from None
        slabs.append((fields[0], numbers))
    return slabs


def slabinfo_families(slabs: list[tuple[str, list[int]]], name_filter: DeviceFilter
                      ) -> list[Metric]:
    families = [GaugeMetricFamily(f"node_slabinfo_{name}", help_text, labels=["slab"])
                for name, help_text, _ in COLUMNS]
    seen = set()
    for slab, numbers in slabs:
        if name_filter.ignored(slab) or slab in seen:
            continue
        seen.add(slab)
        for family, (_, _, column) in zip(families, COLUMNS, strict=True):
            family.add_metric([slab], float(numbers[column - 1]))
    return go_order(families)


class SlabinfoCollector:
    def __init__(self, procfs: Path, include: str | None = ".*",
                 exclude: str | None = None) -> None:
        self._path = procfs / "slabinfo"
        self._filter = DeviceFilter(include, exclude)

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return slabinfo_families(parse_slabinfo(text), self._filter)


def create(context: Context, settings: Any) -> SlabinfoCollector:
    return SlabinfoCollector(context.procfs, settings.slabs_include, settings.slabs_exclude)
