"""xfs: node_xfs_* per filesystem from /sys/fs/xfs/<device>/stats/stats, as node_exporter's
latest release with prometheus/procfs's parsing rules.

No /sys/fs/xfs (no XFS mounted) means no series. A filesystem whose stats file cannot be read or
does not parse (procfs checks the value count of every line it knows) is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Unchanged, family, list_dir, read_raw, sample

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

# The value counts procfs requires of the lines it parses (others only have to be numbers).
COUNTS: dict[str, tuple[int, ...]] = {
    "extent_alloc": (4,), "abt": (4,), "blk_map": (7,), "bmbt": (4,), "dir": (4,),
    "trans": (3,), "ig": (7,), "log": (5,), "push_ail": (10,), "xstrat": (2,), "rw": (2,),
    "attr": (4,), "icluster": (3,), "vnodes": (7, 8), "buf": (9,), "xpc": (3,),
    "abtb2": (15,), "abtc2": (15,), "bmbt2": (15,), "ibt2": (15,), "qm": (8, 9), "debug": (1,),
}

# (metric suffix, help, stats line, column), in node_exporter's order.
METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("extent_allocation_extents_allocated_total",
     "Number of extents allocated for a filesystem.", "extent_alloc", 0),
    ("extent_allocation_blocks_allocated_total",
     "Number of blocks allocated for a filesystem.", "extent_alloc", 1),
    ("extent_allocation_extents_freed_total",
     "Number of extents freed for a filesystem.", "extent_alloc", 2),
    ("extent_allocation_blocks_freed_total",
     "Number of blocks freed for a filesystem.", "extent_alloc", 3),
    ("allocation_btree_lookups_total",
     "Number of allocation B-tree lookups for a filesystem.", "abt", 0),
    ("allocation_btree_compares_total",
     "Number of allocation B-tree compares for a filesystem.", "abt", 1),
    ("allocation_btree_records_inserted_total",
     "Number of allocation B-tree records inserted for a filesystem.", "abt", 2),
    ("allocation_btree_records_deleted_total",
     "Number of allocation B-tree records deleted for a filesystem.", "abt", 3),
    ("block_mapping_reads_total",
     "Number of block map for read operations for a filesystem.", "blk_map", 0),
    ("block_mapping_writes_total",
     "Number of block map for write operations for a filesystem.", "blk_map", 1),
    ("block_mapping_unmaps_total",
     "Number of block unmaps (deletes) for a filesystem.", "blk_map", 2),
    ("block_mapping_extent_list_insertions_total",
     "Number of extent list insertions for a filesystem.", "blk_map", 3),
    ("block_mapping_extent_list_deletions_total",
     "Number of extent list deletions for a filesystem.", "blk_map", 4),
    ("block_mapping_extent_list_lookups_total",
     "Number of extent list lookups for a filesystem.", "blk_map", 5),
    ("block_mapping_extent_list_compares_total",
     "Number of extent list compares for a filesystem.", "blk_map", 6),
    ("block_map_btree_lookups_total",
     "Number of block map B-tree lookups for a filesystem.", "bmbt", 0),
    ("block_map_btree_compares_total",
     "Number of block map B-tree compares for a filesystem.", "bmbt", 1),
    ("block_map_btree_records_inserted_total",
     "Number of block map B-tree records inserted for a filesystem.", "bmbt", 2),
    ("block_map_btree_records_deleted_total",
     "Number of block map B-tree records deleted for a filesystem.", "bmbt", 3),
    ("directory_operation_lookup_total",
     "Number of file name directory lookups which miss the operating systems directory name "
     "lookup cache.", "dir", 0),
    ("directory_operation_create_total",
     "Number of times a new directory entry was created for a filesystem.", "dir", 1),
    ("directory_operation_remove_total",
     "Number of times an existing directory entry was created for a filesystem.", "dir", 2),
    ("directory_operation_getdents_total",
     "Number of times the directory getdents operation was performed for a filesystem.",
     "dir", 3),
    ("inode_operation_attempts_total",
     "Number of times the OS looked for an XFS inode in the inode cache.", "ig", 0),
    ("inode_operation_found_total",
     "Number of times the OS looked for and found an XFS inode in the inode cache.", "ig", 1),
    ("inode_operation_recycled_total",
     "Number of times the OS found an XFS inode in the cache, but could not use it as it was "
     "being recycled.", "ig", 2),
    ("inode_operation_missed_total",
     "Number of times the OS looked for an XFS inode in the cache, but did not find it.",
     "ig", 3),
    ("inode_operation_duplicates_total",
     "Number of times the OS tried to add a missing XFS inode to the inode cache, but found it "
     "had already been added by another process.", "ig", 4),
    ("inode_operation_reclaims_total",
     "Number of times the OS reclaimed an XFS inode from the inode cache to free memory for "
     "another purpose.", "ig", 5),
    ("inode_operation_attribute_changes_total",
     "Number of times the OS explicitly changed the attributes of an XFS inode.", "ig", 6),
    # procfs reads the rw line as (read, write).
    ("read_calls_total",
     "Number of read(2) system calls made to files in a filesystem.", "rw", 0),
    ("write_calls_total",
     "Number of write(2) system calls made to files in a filesystem.", "rw", 1),
    ("vnode_active_total", "Number of vnodes not on free lists for a filesystem.", "vnodes", 0),
    ("vnode_allocate_total", "Number of times vn_alloc called for a filesystem.", "vnodes", 1),
    ("vnode_get_total", "Number of times vn_get called for a filesystem.", "vnodes", 2),
    ("vnode_hold_total", "Number of times vn_hold called for a filesystem.", "vnodes", 3),
    ("vnode_release_total", "Number of times vn_rele called for a filesystem.", "vnodes", 4),
    ("vnode_reclaim_total", "Number of times vn_reclaim called for a filesystem.", "vnodes", 5),
    ("vnode_remove_total", "Number of times vn_remove called for a filesystem.", "vnodes", 6),
)


def parse_stats(text: str) -> dict[str, list[int]]:
    """'label value...' lines -> {label: values}; ValueError as procfs's ParseStats fails:
    a value that is not an unsigned 32-bit number (64-bit on the xpc line), or a known line
    with the wrong number of values. Lines with fewer than two fields are skipped."""
    lines: dict[str, list[int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        label, raw = fields[0], fields[1:]
        limit = UINT64_MAX if label == "xpc" else UINT32_MAX
        if not all(value.isdigit() and int(value) <= limit for value in raw):
            raise ValueError(f"xfs stats: invalid value in {label} line")
        if label in COUNTS and len(raw) not in COUNTS[label]:
            raise ValueError(f"xfs stats: {len(raw)} values for {label}")
        lines[label] = [int(value) for value in raw]
    return lines


def read_sys_stats(sysfs: Path) -> tuple[tuple[str, bytes | None], ...]:
    """(device, bytes of its /sys/fs/xfs/<device>/stats/stats or None) per entry."""
    base = f"{sysfs}/fs/xfs"
    return tuple((device, read_raw(f"{base}/{device}/stats/stats")) for device in list_dir(base))


def parse_sys_stats(raw: tuple[tuple[str, bytes | None], ...]) -> dict[str, dict[str, list[int]]]:
    """device -> parsed stats, for each stats file that was read and parses."""
    stats = {}
    for device, data in raw:
        if data is None:
            continue  # not a filesystem directory (stats/ is the global one), or unreadable
        try:
            stats[device] = parse_stats(data.decode(errors="replace"))
        except ValueError:
            continue
    return stats


def xfs_families(stats: dict[str, dict[str, list[int]]]) -> list[Metric]:
    families = []
    for suffix, help_text, line, column in METRICS:
        name = f"node_xfs_{suffix}".removesuffix("_total")
        metric = family(name, help_text, "counter")
        name += "_total"
        for device, lines in stats.items():
            values = lines.get(line, [])
            metric.samples.append(sample(name, {"device": device},
                                         values[column] if column < len(values) else 0))
        families.append(metric)
    return [metric for metric in families if metric.samples]


class XfsCollector:
    def __init__(self, sysfs: Path) -> None:
        self._sysfs = sysfs
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        raw = read_sys_stats(self._sysfs)
        return self._unchanged.get(raw, lambda: xfs_families(parse_sys_stats(raw)))


def create(context: Context, settings: Any) -> XfsCollector:
    return XfsCollector(context.sysfs)
