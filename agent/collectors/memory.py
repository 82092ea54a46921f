"""memory: node_memory_<Field>[_bytes] from /proc/meminfo, node_exporter's names.

node_exporter's latest release reads /proc/meminfo through procfs's Meminfo, so it exports the
fields that struct knows (NODE_EXPORTER_FIELDS), each only when the kernel reports it; newer
fields (KReclaimable, SecPageTables, FileHugePages, Unaccepted, ...) are not exported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Singles, gauge
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

_PARENS = re.compile(r"\((.*)\)")
NODE_EXPORTER_FIELDS = frozenset({
    "Active_bytes", "Active_anon_bytes", "Active_file_bytes", "AnonHugePages_bytes",
    "AnonPages_bytes", "Bounce_bytes", "Buffers_bytes", "Cached_bytes", "CmaFree_bytes",
    "CmaTotal_bytes", "CommitLimit_bytes", "Committed_AS_bytes", "DirectMap1G_bytes",
    "DirectMap2M_bytes", "DirectMap4k_bytes", "Dirty_bytes", "HardwareCorrupted_bytes",
    "Hugepagesize_bytes", "Inactive_bytes", "Inactive_anon_bytes", "Inactive_file_bytes",
    "KernelStack_bytes", "Mapped_bytes", "MemAvailable_bytes", "MemFree_bytes",
    "MemTotal_bytes", "Mlocked_bytes", "NFS_Unstable_bytes", "PageTables_bytes",
    "Percpu_bytes", "SReclaimable_bytes", "SUnreclaim_bytes", "Shmem_bytes",
    "ShmemHugePages_bytes", "ShmemPmdMapped_bytes", "Slab_bytes", "SwapCached_bytes",
    "SwapFree_bytes", "SwapTotal_bytes", "Unevictable_bytes", "VmallocChunk_bytes",
    "VmallocTotal_bytes", "VmallocUsed_bytes", "Writeback_bytes", "WritebackTmp_bytes",
    "Zswap_bytes", "Zswapped_bytes",
    # Counts of huge pages, without a unit.
    "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp", "HugePages_Total",
})
# Each exported field's metric name and help, formatted once. None of them ends in _total,
# so all are gauges.
_FAMILIES = {key: (f"node_memory_{key}", f"Memory information field {key}.")
             for key in NODE_EXPORTER_FIELDS}


def parse_meminfo(text: str, names: dict[str, str] | None = None) -> dict[str, float]:
    """'Active(anon):  123 kB' -> {'Active_anon_bytes': 125952.0}; unitless keys stay bare.
    names: the normalised name of each raw one seen before, kept by the caller (the
    kernel's set is fixed, and the regex substitution is most of a line's cost)."""
    fields: dict[str, float] = {}
    names = {} if names is None else names
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        key = names.get(parts[0])
        if key is None:
            key = names[parts[0]] = _PARENS.sub(r"_\1", parts[0][:-1])
        value = float(parts[1])
        if len(parts) == 3 and parts[2] == "kB":
            key += "_bytes"
            value *= 1024
        fields[key] = value
    return fields


class MemoryCollector:
    def __init__(self, procfs: Path) -> None:
        self._meminfo = str(procfs / "meminfo")
        self._files = HeldFiles()
        self._names: dict[str, str] = {}
        self._singles = Singles()

    def collect(self) -> list[Metric]:
        text = self._files.read(self._meminfo).decode()
        families = memory_families(parse_meminfo(text, self._names), self._singles)
        self._singles.done()
        return families


def memory_families(fields: dict[str, float], singles: Singles | None = None) -> list[Metric]:
    families: list[Metric] = []
    for key, value in sorted(fields.items()):
        names = _FAMILIES.get(key)
        if names is not None:
            families.append(gauge(names[0], names[1], value, singles))
    return families


def create(context: Context, settings: Any) -> MemoryCollector:
    return MemoryCollector(context.procfs)
