"""memory: node_memory_<Field>[_bytes] from /proc/meminfo, node_exporter's names.

node_exporter's latest release reads /proc/meminfo through procfs's Meminfo, so it exports the
fields that struct knows (NODE_EXPORTER_FIELDS), each only when the kernel reports it; newer
fields (KReclaimable, SecPageTables, FileHugePages, Unaccepted, ...) are not exported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

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


def parse_meminfo(text: str) -> dict[str, float]:
    """'Active(anon):  123 kB' -> {'Active_anon_bytes': 125952.0}; unitless keys stay bare."""
    fields: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        key = _PARENS.sub(r"_\1", parts[0][:-1])
        value = float(parts[1])
        if len(parts) == 3 and parts[2] == "kB":
            key += "_bytes"
            value *= 1024
        fields[key] = value
    return fields


class MemoryCollector:
    def __init__(self, procfs: Path) -> None:
        self._meminfo = procfs / "meminfo"

    def collect(self) -> list[Metric]:
        return memory_families(parse_meminfo(self._meminfo.read_text()))


def memory_families(fields: dict[str, float]) -> list[Metric]:
    families: list[Metric] = []
    for key, value in sorted(fields.items()):
        if key not in NODE_EXPORTER_FIELDS:
            continue
        help_text = f"Memory information field {key}."
        if key.endswith("_total"):
            families.append(CounterMetricFamily(f"node_memory_{key}", help_text, value=value))
        else:
            families.append(GaugeMetricFamily(f"node_memory_{key}", help_text, value=value))
    return families


def create(context: Context, settings: Any) -> MemoryCollector:
    return MemoryCollector(context.procfs)
