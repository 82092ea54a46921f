"""memory: node_memory_<Field>[_bytes] for every /proc/meminfo field, node_exporter's names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

_PARENS = re.compile(r"\((.*)\)")


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
    for key, value in fields.items():
        help_text = f"Memory information field {key}."
        if key.endswith("_total"):
            families.append(CounterMetricFamily(f"node_memory_{key}", help_text, value=value))
        else:
            families.append(GaugeMetricFamily(f"node_memory_{key}", help_text, value=value))
    return families


def create(context: Context, settings: Any) -> MemoryCollector:
    return MemoryCollector(context.procfs)
