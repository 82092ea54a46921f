"""entropy: node_entropy_available_bits and node_entropy_pool_size_bits, as node_exporter 1.5."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


class EntropyCollector:
    def __init__(self, procfs: Path) -> None:
        self._random = procfs / "sys" / "kernel" / "random"

    def collect(self) -> list[Metric]:
        available = int((self._random / "entropy_avail").read_text())
        pool_size = int((self._random / "poolsize").read_text())
        return entropy_families(available, pool_size)


def entropy_families(available: int, pool_size: int) -> list[Metric]:
    return [
        GaugeMetricFamily("node_entropy_available_bits", "Bits of available entropy.",
                          value=float(available)),
        GaugeMetricFamily("node_entropy_pool_size_bits", "Bits of entropy pool.",
                          value=float(pool_size)),
    ]


def create(context: Context, settings: Any) -> EntropyCollector:
    return EntropyCollector(context.procfs)
