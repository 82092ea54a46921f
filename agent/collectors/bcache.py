"""bcache: node_bcache_* per cache set from /sys/fs/bcache/<uuid>, its backing devices
(bdev*) and cache devices (cache*), as node_exporter's latest release with
prometheus/procfs's bcache parsing (bch_hprint's humanized values, writeback_rate_debug).

priority_stats is read only with --collector.bcache.priorityStats: the kernel walks every
bucket to produce it. No /sys/fs/bcache means no series. As in node_exporter, an attribute
of a cache set that cannot be read or parsed fails the collector (procfs returns one error
for all cache sets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    Unchanged,
    family,
    go_order,
    list_dir,
    parse_float,
    parse_int,
    read_file_bytes,
    sample,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# bch_hprint's suffixes (drivers/md/bcache/util.c).
MULTIPLIERS = {"k": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60,
               "Z": 2**70, "Y": 2**80}

PERIOD_FILES = ("bypassed", "cache_bypass_hits", "cache_bypass_misses", "cache_hits",
                "cache_miss_collisions", "cache_misses", "cache_readaheads")


class BcacheError(Exception):
    pass


def _go_float(text: str) -> float:
    value = parse_float(text)
    if value is None:
        raise BcacheError(f"invalid number {text!r}")
    return value


def _pseudo_float(text: str) -> float:
    """bch_hprint's 'integer.tenths' where the fraction counts 1024ths in steps of ~10."""
    parts = text.split(".")
    value = _go_float(parts[0])
    if len(parts) == 1:
        return value
    return value + _go_float(parts[1]) / 10.24


def _to_uint64(value: float) -> int:
    """Go's uint64(float64): truncation toward zero (values here are never negative)."""
    return int(value) if value == value and abs(value) != float("inf") else 0


def dehumanize(text: str) -> int:
    """procfs's dehumanize: '542k' -> 555008, '1.10k' -> 2024, '17' -> 17."""
    if not text:
        raise BcacheError("zero-length reply")
    last = text[-1]
    if last > "9":  # a multiplier suffix; an unknown one counts as 0, as in procfs
        return _to_uint64(_pseudo_float(text[:-1]) * MULTIPLIERS.get(last, 0))
    return _to_uint64(_go_float(text))


def dehumanize_signed(text: str) -> int:
    value = dehumanize(text.removeprefix("-"))
    return -value if text.startswith("-") else value


@dataclass
class WritebackRateDebug:
    rate: int = 0
    dirty: int = 0
    target: int = 0
    proportional: int = 0
    integral: int = 0
    change: int = 0
    next_io: int = 0


def _last_field(line: str) -> str:
    return line.split()[-1]


_WRD: tuple[tuple[str, str, Callable[[str], int], str], ...] = (
    ("rate:", "rate", dehumanize, "/sec"),
    ("dirty:", "dirty", dehumanize, ""),
    ("target:", "target", dehumanize, ""),
    ("proportional:", "proportional", dehumanize_signed, ""),
    ("integral:", "integral", dehumanize_signed, ""),
    ("change:", "change", dehumanize_signed, "/sec"),
)


def parse_writeback_rate_debug(text: str) -> WritebackRateDebug:
    out = WritebackRateDebug()
    for line in text.splitlines():
        for prefix, attr, convert, suffix in _WRD:
            if line.startswith(prefix):
                setattr(out, attr, convert(_last_field(line).removesuffix(suffix)))
                break
        else:
            if line.startswith("next io:"):
                value = parse_int(_last_field(line).removesuffix("ms"))
                if value is None:
                    raise BcacheError(f"invalid next io line {line!r}")
                out.next_io = value
    return out


def parse_priority_stats(text: str) -> tuple[int, int]:
    """(Unused %, Metadata %) of a cache device's priority_stats."""
    unused = metadata = 0
    for line in text.splitlines():
        if line.startswith(("Unused:", "Metadata:")):
            raw = _last_field(line).removesuffix("%")
            if not raw.isascii() or not raw.isdigit():
                raise BcacheError(f"invalid priority_stats line {line!r}")
            if line.startswith("Unused:"):
                unused = int(raw)
            else:
                metadata = int(raw)
    return unused, metadata


@dataclass
class Bdev:
    name: str
    dirty_data: int
    writeback: WritebackRateDebug
    total: dict[str, int]


@dataclass
class Cache:
    name: str
    io_errors: int
    metadata_written: int
    written: int
    priority: tuple[int, int] = (0, 0)


@dataclass
class CacheSet:
    name: str
    values: dict[str, int] = field(default_factory=dict)
    bdevs: list[Bdev] = field(default_factory=list)
    caches: list[Cache] = field(default_factory=list)


def _read(path: str) -> str:
    try:
        return read_file_bytes(path).decode(errors="replace")
    except OSError:
        raise BcacheError(f"failed to read: {path}") from None


def read_value(path: str) -> int:
    """procfs's readValue: the file without its last byte (the newline), dehumanized."""
    return dehumanize(_read(path)[:-1])


_NUMBERED = re.compile(r"^(bdev|cache)[0-9]")


def read_cache_set(path: str, priority_stats: bool) -> CacheSet:
    cache_set = CacheSet(os.path.basename(path))
    for name in ("average_key_size", "btree_cache_size", "cache_available_percent",
                 "congested", "root_usage_percent", "tree_depth"):
        cache_set.values[name] = read_value(f"{path}/{name}")
    for name in ("active_journal_entries", "btree_nodes", "btree_read_average_duration_us",
                 "cache_read_races"):
        cache_set.values[name] = read_value(f"{path}/internal/{name}")
    for period in ("stats_five_minute", "stats_total"):  # read (and required) by procfs
        for name in PERIOD_FILES:
            read_value(f"{path}/{period}/{name}")
    entries = [e for e in list_dir(path) if _NUMBERED.match(e)]
    for entry in (e for e in entries if e.startswith("bdev")):
        bdev_path = f"{path}/{entry}"
        dirty = read_value(f"{bdev_path}/dirty_data")
        writeback = parse_writeback_rate_debug(_read(f"{bdev_path}/writeback_rate_debug"))
        for name in PERIOD_FILES:
            read_value(f"{bdev_path}/stats_five_minute/{name}")
        total = {name: read_value(f"{bdev_path}/stats_total/{name}") for name in PERIOD_FILES}
        cache_set.bdevs.append(Bdev(entry, dirty, writeback, total))
    for entry in (e for e in entries if e.startswith("cache")):
        cache_path = f"{path}/{entry}"
        cache = Cache(entry, read_value(f"{cache_path}/io_errors"),
                      read_value(f"{cache_path}/metadata_written"),
                      read_value(f"{cache_path}/written"))
        if priority_stats:
            cache.priority = parse_priority_stats(_read(f"{cache_path}/priority_stats"))
        cache_set.caches.append(cache)
    return cache_set


# (name, help, counter, value of the cache set)
SET_METRICS: tuple[tuple[str, str, bool, Callable[[dict[str, int]], float]], ...] = (
    ("average_key_size_sectors", "Average data per key in the btree (sectors).", False,
     lambda v: v["average_key_size"]),
    ("btree_cache_size_bytes", "Amount of memory currently used by the btree cache.", False,
     lambda v: v["btree_cache_size"]),
    ("cache_available_percent", "Percentage of cache device without dirty data, usable for "
     "writeback (may contain clean cached data).", False,
     lambda v: v["cache_available_percent"]),
    ("congested", "Congestion.", False, lambda v: v["congested"]),
    ("root_usage_percent", "Percentage of the root btree node in use (tree depth increases "
     "if too high).", False, lambda v: v["root_usage_percent"]),
    ("tree_depth", "Depth of the btree.", False, lambda v: v["tree_depth"]),
    ("active_journal_entries", "Number of journal entries that are newer than the index.",
     False, lambda v: v["active_journal_entries"]),
    ("btree_nodes", "Total nodes in the btree.", False, lambda v: v["btree_nodes"]),
    # procfs calls the microseconds nanoseconds; node_exporter scales them by 1e-9.
    ("btree_read_average_duration_seconds", "Average btree read duration.", False,
     lambda v: v["btree_read_average_duration_us"] * 1e-9),
    ("cache_read_races_total", "Counts instances where while data was being read from the "
     "cache, the bucket was reused and invalidated - i.e. where the pointer was stale after "
     "the read completed.", True, lambda v: v["cache_read_races"]),
)

BDEV_METRICS: tuple[tuple[str, str, Callable[[Bdev], float]], ...] = (
    ("dirty_data_bytes", "Amount of dirty data for this backing device in the cache.",
     lambda b: b.dirty_data),
    ("dirty_target_bytes", "Current dirty data target threshold for this backing device in "
     "bytes.", lambda b: b.writeback.target),
    ("writeback_rate", "Current writeback rate for this backing device in bytes.",
     lambda b: b.writeback.rate),
    ("writeback_rate_proportional_term", "Current result of proportional controller, part "
     "of writeback rate", lambda b: b.writeback.proportional),
    ("writeback_rate_integral_term", "Current result of integral controller, part of "
     "writeback rate", lambda b: b.writeback.integral),
    ("writeback_change", "Last writeback rate change step for this backing device.",
     lambda b: b.writeback.change),
)

PERIOD_METRICS: tuple[tuple[str, str, str], ...] = (
    ("bypassed_bytes_total", "Amount of IO (both reads and writes) that has bypassed the "
     "cache.", "bypassed"),
    ("cache_hits_total", "Hits counted per individual IO as bcache sees them.", "cache_hits"),
    ("cache_misses_total", "Misses counted per individual IO as bcache sees them.",
     "cache_misses"),
    ("cache_bypass_hits_total", "Hits for IO intended to skip the cache.",
     "cache_bypass_hits"),
    ("cache_bypass_misses_total", "Misses for IO intended to skip the cache.",
     "cache_bypass_misses"),
    ("cache_miss_collisions_total", "Instances where data insertion from cache miss raced "
     "with write (data already present).", "cache_miss_collisions"),
)
READAHEADS = ("cache_readaheads_total", "Count of times readahead occurred.")

CACHE_METRICS: tuple[tuple[str, str, bool, Callable[[Cache], float]], ...] = (
    ("io_errors", "Number of errors that have occurred, decayed by io_error_halflife.", False,
     lambda c: c.io_errors),
    ("metadata_written_bytes_total", "Sum of all non data writes (btree writes and all "
     "other metadata).", True, lambda c: c.metadata_written),
    ("written_bytes_total", "Sum of all data that has been written to the cache.", True,
     lambda c: c.written),
)
PRIORITY_METRICS: tuple[tuple[str, str, int], ...] = (
    ("priority_stats_unused_percent", "The percentage of the cache that doesn't contain any "
     "data.", 0),
    ("priority_stats_metadata_percent", "Bcache's metadata overhead.", 1),
)


def bcache_families(cache_sets: list[CacheSet], priority_stats: bool) -> list[Metric]:
    # name -> (family, its samples' name: a counter's without _total, then with it)
    families: dict[str, tuple[Metric, str]] = {}

    def add(name: str, help_text: str, counter: bool, labels: list[str], values: list[str],
            value: float) -> None:
        entry = families.get(name)
        if entry is None:
            full = f"node_bcache_{name}"
            if counter:
                full = full.removesuffix("_total")
                entry = (family(full, help_text, "counter"), full + "_total")
            else:
                entry = (family(full, help_text, "gauge"), full)
            families[name] = entry
        entry[0].samples.append(sample(entry[1], dict(zip(labels, values, strict=True)), value))

    for cs in cache_sets:
        for name, help_text, counter, get in SET_METRICS:
            add(name, help_text, counter, ["uuid"], [cs.name], get(cs.values))
        labels = ["uuid", "backing_device"]
        for bdev in cs.bdevs:
            for name, help_text, bdev_value in BDEV_METRICS:
                add(name, help_text, False, labels, [cs.name, bdev.name], bdev_value(bdev))
            for name, help_text, key in PERIOD_METRICS:
                add(name, help_text, True, labels, [cs.name, bdev.name], bdev.total[key])
            if bdev.total["cache_readaheads"]:  # only when non-zero, as node_exporter
                add(*READAHEADS, True, labels, [cs.name, bdev.name],
                    bdev.total["cache_readaheads"])
        labels = ["uuid", "cache_device"]
        for cache in cs.caches:
            for name, help_text, counter, cache_value in CACHE_METRICS:
                add(name, help_text, counter, labels, [cs.name, cache.name], cache_value(cache))
            if priority_stats:
                for name, help_text, index in PRIORITY_METRICS:
                    add(name, help_text, False, labels, [cs.name, cache.name],
                        cache.priority[index])
    return go_order(metric for metric, _ in families.values())


class BcacheCollector:
    def __init__(self, sysfs: Path, priority_stats: bool = False) -> None:
        self._base = str(sysfs / "fs" / "bcache")
        self._priority_stats = priority_stats
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        # procfs globs fs/bcache/*-*: cache set UUIDs (not register, register_quiet, ...).
        names = [n for n in list_dir(self._base) if "-" in n]
        cache_sets = []
        for name in names:
            path = f"{self._base}/{name}"
            if not os.path.isdir(path):
                continue
            cache_sets.append(read_cache_set(path, self._priority_stats))
        # Every value read, compared by value: the families again only when one differs.
        return self._unchanged.get(tuple(cache_sets),
                                   lambda: bcache_families(cache_sets, self._priority_stats))


def create(context: Context, settings: Any) -> BcacheCollector:
    return BcacheCollector(context.sysfs, bool(getattr(settings, "priority_stats", False)))
