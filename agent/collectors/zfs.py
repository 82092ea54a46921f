"""zfs: node_zfs_* from the ZFS kstats under /proc/spl/kstat/zfs, as node_exporter's latest
release: one untyped series per kstat of each global statistics file (named
node_zfs_<subsystem>_<kstat>, help kstat.zfs.misc.<file>.<kstat>), per pool the io kstat
(node_zfs_zpool_*), per dataset its objset kstat (node_zfs_zpool_dataset_*) and the pool state
(node_zfs_zpool_state, one series per state node_exporter knows).

No /proc/spl/kstat/zfs (the module is not loaded) means no series; a statistics file that a
ZFS version lacks is skipped. A file that does not parse is left out (node_exporter fails
the whole collector on it, after part of the series were sent, in random map order).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    Unchanged,
    family,
    go_order,
    list_dir,
    read_raw,
    sample,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# node_exporter's subsystem -> kstat file.
SUBSYSTEMS: dict[str, str] = {
    "zfs_abd": "abdstats",
    "zfs_arc": "arcstats",
    "zfs_dbuf": "dbufstats",
    "zfs_dmu_tx": "dmu_tx",
    "zfs_dnode": "dnodestats",
    "zfs_fm": "fm",
    "zfs_vdev_cache": "vdev_cache_stats",
    "zfs_vdev_mirror": "vdev_mirror_stats",
    "zfs_xuio": "xuio_stats",
    "zfs_zfetch": "zfetchstats",
    "zfs_zil": "zil",
}

POOL_STATES = ("online", "degraded", "faulted", "offline", "removed", "unavail", "suspended")

KSTAT_INT64 = "3"
KSTAT_UINT64 = "4"
UINT64_MAX = 2**64 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _uint(text: str) -> int:
    """strconv.ParseUint(text, 10, 64)."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if value <= UINT64_MAX:
            return value
    raise ValueError(f"not an unsigned 64-bit integer: {text!r}")


def _int(text: str) -> int:
    """strconv.ParseInt(text, 10, 64)."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"not a 64-bit integer: {text!r}")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"not a 64-bit integer: {text!r}")
    return value


def metric_name(kstat: str) -> str:
    """node_exporter's name for a kstat: '-' becomes '_'."""
    return kstat.replace("-", "_")


def _kstat_rows(text: str) -> Iterator[tuple[str, list[str]]]:
    """The (line, fields) of a named kstat's rows of three or more fields under its
    'name type data' header; ValueError at the end when there was no header."""
    started = False
    for line in text.splitlines():
        parts = line.split()
        if not started:
            started = parts == ["name", "type", "data"]
        elif len(parts) >= 3:
            yield line, parts
    if not started:
        raise ValueError("no 'name type data' header")


def parse_kstat(text: str) -> list[tuple[str, int]]:
    """A named kstat ('name type data' header, then one 'name type value' line each): the
    int64 and uint64 kstats in file order; ValueError if the header is missing or a value
    does not parse as its type."""
    values: list[tuple[str, int]] = []
    for _, parts in _kstat_rows(text):
        if parts[1] == KSTAT_UINT64:
            values.append((parts[0], _uint(parts[2])))
        elif parts[1] == KSTAT_INT64:
            values.append((parts[0], _int(parts[2])))
    return values


def parse_pool_io(text: str) -> list[tuple[str, int]]:
    """A pool's io kstat: a header line starting with nread (12 or more fields), then the
    values under it."""
    fields: list[str] | None = None
    values: list[tuple[str, int]] = []
    for line in text.splitlines():
        parts = line.split()
        if fields is None:
            if len(parts) >= 12 and parts[0] == "nread":
                fields = parts
            continue
        if len(parts) < len(fields):
            raise ValueError(f"io: {len(parts)} values for {len(fields)} fields")
        values.extend((field, _uint(parts[i])) for i, field in enumerate(fields))
    return values


def parse_objset(text: str) -> tuple[str, list[tuple[str, int]]]:
    """A dataset's objset kstat: its name (the rest of the dataset_name line, inner spaces
    kept) and its uint64 kstats."""
    dataset = ""
    values: list[tuple[str, int]] = []
    for line, parts in _kstat_rows(text):
        if parts[0] == "dataset_name":
            # Everything after the type column: dataset names may contain spaces.
            rest = line.lstrip()[len(parts[0]):].lstrip()[len(parts[1]):]
            dataset = rest.lstrip()
            continue
        if parts[1] == KSTAT_UINT64:
            values.append((parts[0], _uint(parts[2])))
    return dataset, values


def parse_state(text: str) -> str:
    """The pool state file's first line, lower case (ONLINE, DEGRADED, SUSPENDED, ...)."""
    lines = text.splitlines()
    return lines[0].lower() if lines else ""


def _entries(path: str) -> list[tuple[str, bool]]:
    """(name, is a directory) of a directory's entries, sorted; empty when it is missing."""
    try:
        with os.scandir(path) as entries:
            return sorted((e.name, e.is_dir()) for e in entries)
    except OSError:
        return []


# What the output is built from: the global statistics files' bytes (SUBSYSTEMS order; None
# where missing), then per pool (name, io, its objset files' (name, bytes), state).
PoolRaw = tuple[str, bytes | None, tuple[tuple[str, bytes | None], ...], bytes | None]
Raw = tuple[tuple[bytes | None, ...], tuple[PoolRaw, ...]]


def _text(data: bytes) -> str:
    return data.decode(errors="replace")


class ZfsCollector:
    def __init__(self, procfs: Path) -> None:
        self._base = str(procfs / "spl" / "kstat" / "zfs")
        # file -> kstat -> (metric name, "" if not a valid one; help): kstat names are few
        # and fixed per ZFS version.
        self._names: dict[str, dict[str, tuple[str, str]]] = {}
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        raw = self.read()
        if raw is None:
            return []
        return self._unchanged.get(raw, lambda: self.build(raw))

    def read(self) -> Raw | None:
        """Every file the output depends on; None without /proc/spl/kstat/zfs."""
        base = self._base
        entries = _entries(base)
        if not entries and not os.path.isdir(base):
            return None
        stats = tuple(read_raw(f"{base}/{filename}") for filename in SUBSYSTEMS.values())
        pools = tuple(
            (pool, read_raw(f"{base}/{pool}/io"),
             tuple((entry, read_raw(f"{base}/{pool}/{entry}"))
                   for entry in list_dir(f"{base}/{pool}") if entry.startswith("objset-")),
             read_raw(f"{base}/{pool}/state"))
            for pool, is_dir in entries if is_dir)
        return stats, pools

    def build(self, raw: Raw) -> list[Metric]:
        stats, pools = raw
        families: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[str, ...]]] = set()

        def add(name: str, help_text: str, labels: tuple[str, ...], values: tuple[str, ...],
                value: float, typ: str = "unknown") -> None:
            metric = families.get(name)
            if metric is None:
                if not _METRIC_NAME.match(name):
                    return
                metric = families[name] = family(name, help_text, typ)
            elif not labels or (name, values) in seen:
                return  # a repeated series: the first one counts, as node_exporter
            seen.add((name, values))
            metric.samples.append(sample(name, dict(zip(labels, values, strict=True)), value))

        for (subsystem, filename), data in zip(SUBSYSTEMS.items(), stats, strict=True):
            if data is None:
                continue  # a ZFS version without this statistics file
            try:
                parsed = parse_kstat(_text(data))
            except ValueError:
                continue
            names = self._names.setdefault(filename, {})
            for kstat, value in parsed:
                named = names.get(kstat)
                if named is None:
                    name = f"node_{subsystem}_{metric_name(kstat)}"
                    named = names[kstat] = (name if _METRIC_NAME.match(name) else "",
                                            f"kstat.zfs.misc.{filename}.{kstat}")
                name = named[0]
                if name and name not in families:  # a repeated kstat: the first one counts
                    families[name] = family(name, named[1], "unknown",
                                            [sample(name, {}, float(value))])

        for pool, io_data, _, _ in pools:
            try:
                io = parse_pool_io(_text(io_data)) if io_data is not None else []
            except ValueError:
                io = []
            for field, value in io:
                add(f"node_zfs_zpool_{metric_name(field)}", f"kstat.zfs.misc.io.{field}",
                    ("zpool",), (pool,), float(value))
        for pool, _, objsets, _ in pools:
            for _, data in objsets:
                if data is None:
                    continue
                try:
                    dataset, objset = parse_objset(_text(data))
                except ValueError:
                    continue
                for kstat, value in objset:
                    add(f"node_zfs_zpool_dataset_{metric_name(kstat)}",
                        f"kstat.zfs.misc.objset.{kstat}", ("zpool", "dataset"),
                        (pool, dataset), float(value))
        for pool, _, _, state_data in pools:
            if state_data is None:
                continue
            state = parse_state(_text(state_data))
            for name in POOL_STATES:
                add("node_zfs_zpool_state", "kstat.zfs.misc.state", ("zpool", "state"),
                    (pool, name), 1.0 if state == name else 0.0, typ="gauge")
        return go_order(families.values())


def create(context: Context, settings: Any) -> ZfsCollector:
    return ZfsCollector(context.procfs)
