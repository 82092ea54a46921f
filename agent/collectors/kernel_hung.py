"""kernel_hung: node_kernel_hung_task_detect_count from /proc/sys/kernel/hung_task_detect_count
(kernels built with the hung task detector), as node_exporter's latest release (off by default).

node_exporter types it a counter without the _total suffix, and so does this collector.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import bare_counter, parse_int, read_text

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


class KernelHungCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "sys" / "kernel" / "hung_task_detect_count"

    def collect(self) -> list[Metric]:
        text = read_text(self._path)
        value = None if text is None else parse_int(text)
        if value is None or value < 0:
            return []
        return [bare_counter("node_kernel_hung_task_detect_count",
                             "Total number of interrupts serviced.", float(value))]


def create(context: Context, settings: Any) -> KernelHungCollector:
    return KernelHungCollector(context.procfs)
