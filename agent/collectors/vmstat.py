"""vmstat: node_vmstat_<field> (untyped) for the /proc/vmstat fields matching a regex."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric, UnknownMetricFamily

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def parse_vmstat(text: str) -> dict[str, float]:
    """'pgfault 5045062' lines -> {'pgfault': 5045062.0}, in file order."""
    fields: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            fields[parts[0]] = float(parts[1])
    return fields


class VmstatCollector:
    def __init__(self, procfs: Path, fields: str) -> None:
        self._vmstat = procfs / "vmstat"
        self._fields = re.compile(fields)

    def collect(self) -> list[Metric]:
        stats = parse_vmstat(self._vmstat.read_text())
        return vmstat_families({k: v for k, v in stats.items() if self._fields.search(k)})


def vmstat_families(fields: dict[str, float]) -> list[Metric]:
    return [
        UnknownMetricFamily(f"node_vmstat_{key}", f"/proc/vmstat information field {key}.",
                            value=fields[key])
        for key in sorted(fields)
    ]


def create(context: Context, settings: Any) -> VmstatCollector:
    return VmstatCollector(context.procfs, settings.fields)
