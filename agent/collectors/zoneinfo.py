"""zoneinfo: node_zoneinfo_* per NUMA node and zone from /proc/zoneinfo, as node_exporter's
zoneinfo collector (off by default). As procfs parses it, a node's per-node statistics are
reported under the zone whose block holds them (the node's first zone)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NODE_ZONE = re.compile(r"(\d+), zone\s+(\w+)")
_DECIMAL = re.compile(r"[+-]?\d+")

# /proc/zoneinfo field -> (metric name, help, counter), in procfs's field order.
FIELDS: dict[str, tuple[str, str, bool]] = {
    "nr_free_pages": ("nr_free_pages", "Total number of free pages in the zone", False),
    "min": ("min_pages", "Zone watermark pages_min", False),
    "low": ("low_pages", "Zone watermark pages_low", False),
    "high": ("high_pages", "Zone watermark pages_high", False),
    "scanned": ("scanned_pages", "Pages scanned since last reclaim", False),
    "spanned": ("spanned_pages", "Total pages spanned by the zone, including holes", False),
    "present": ("present_pages", "Physical pages existing within the zone", False),
    "managed": ("managed_pages", "Present pages managed by the buddy system", False),
    "nr_active_anon": ("nr_active_anon_pages", "Number of anonymous pages recently more used",
                       False),
    "nr_inactive_anon": ("nr_inactive_anon_pages",
                         "Number of anonymous pages recently less used", False),
    "nr_isolated_anon": ("nr_isolated_anon_pages", "Temporary isolated pages from anon lru",
                         False),
    "nr_anon_pages": ("nr_anon_pages", "Number of anonymous pages currently used by the system",
                      False),
    "nr_anon_transparent_hugepages": (
        "nr_anon_transparent_hugepages",
        "Number of anonymous transparent huge pages currently used by the system", False),
    "nr_active_file": ("nr_active_file_pages", "Number of active pages with file-backing",
                       False),
    "nr_inactive_file": ("nr_inactive_file_pages", "Number of inactive pages with file-backing",
                         False),
    "nr_isolated_file": ("nr_isolated_file_pages", "Temporary isolated pages from file lru",
                         False),
    "nr_file_pages": ("nr_file_pages", "Number of file pages", False),
    "nr_slab_reclaimable": ("nr_slab_reclaimable_pages", "Number of reclaimable slab pages",
                            False),
    "nr_slab_unreclaimable": ("nr_slab_unreclaimable_pages",
                              "Number of unreclaimable slab pages", False),
    "nr_mlock_stack": ("nr_mlock_stack_pages", "mlock()ed pages found and moved off LRU", False),
    "nr_kernel_stack": ("nr_kernel_stacks", "Number of kernel stacks", False),
    "nr_mapped": ("nr_mapped_pages", "Number of mapped pages", False),
    "nr_dirty": ("nr_dirty_pages", "Number of dirty pages", False),
    "nr_writeback": ("nr_writeback_pages", "Number of writeback pages", False),
    "nr_unevictable": ("nr_unevictable_pages", "Number of unevictable pages", False),
    "nr_shmem": ("nr_shmem_pages", "Number of shmem pages (included tmpfs/GEM pages)", False),
    "nr_dirtied": ("nr_dirtied_total", "Page dirtyings since bootup", True),
    "nr_written": ("nr_written_total", "Page writings since bootup", True),
    "numa_hit": ("numa_hit_total", "Allocated in intended node", True),
    "numa_miss": ("numa_miss_total", "Allocated in non intended node", True),
    "numa_foreign": ("numa_foreign_total", "Was intended here, hit elsewhere", True),
    "numa_interleave": ("numa_interleave_total", "Interleaver preferred this zone", True),
    "numa_local": ("numa_local_total", "Allocation from local node", True),
    "numa_other": ("numa_other_total", "Allocation from other node", True),
}


def _go_int(text: str) -> int:
    """procfs's ValueParser: base inferred from the prefix; a value it cannot parse is 0."""
    try:
        return int(text, 0) if not _DECIMAL.fullmatch(text) else int(text, 10)
    except ValueError:
        return 0


class Zone:
    def __init__(self) -> None:
        self.node = ""
        self.zone = ""
        self.values: dict[str, int] = {}
        self.protection: list[int] = []


def parse_zoneinfo(text: str) -> list[Zone]:
    zones = []
    for block in text.split("\nNode"):
        zone = Zone()
        for line in block.split("\n"):
            match = NODE_ZONE.search(line)
            if match:
                zone.node, zone.zone = match[1], match[2]
                continue
            stripped = line.strip()
            if stripped.startswith("per-node stats"):
                continue
            parts = stripped.split()
            if len(parts) < 2:
                continue
            if parts[0] in FIELDS:
                zone.values[parts[0]] = _go_int(parts[1])
            elif parts[0] == "protection:":
                inner = line.split(":")[1].replace("(", "", 1).replace(")", "", 1).strip()
                # procfs keeps the previous value when one does not parse
                with contextlib.suppress(ValueError):
                    zone.protection = [int(v) for v in inner.split(", ")]
        zones.append(zone)
    return zones


def zoneinfo_families(zones: list[Zone]) -> list[Metric]:
    families = Families()
    labels = ["node", "zone"]
    for zone in zones:
        values = [zone.node, zone.zone]
        for field, (name, help_text, counter) in FIELDS.items():
            if field in zone.values:
                families.add(f"node_zoneinfo_{name}", help_text, labels, values,
                             float(zone.values[field]), counter=counter)
        for index, value in enumerate(zone.protection):
            families.add(f"node_zoneinfo_protection_{index}", f"Protection array {index}. field",
                         labels, values, float(value))
    return families.result()


class ZoneinfoCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "zoneinfo"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return zoneinfo_families(parse_zoneinfo(text))


def create(context: Context, settings: Any) -> ZoneinfoCollector:
    return ZoneinfoCollector(context.procfs)
