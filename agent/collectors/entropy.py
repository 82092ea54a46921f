"""entropy: node_entropy_available_bits and node_entropy_pool_size_bits, as node_exporter 1.5."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Unchanged, gauge
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


class EntropyCollector:
    def __init__(self, procfs: Path) -> None:
        random = procfs / "sys" / "kernel" / "random"
        self._available = str(random / "entropy_avail")
        self._pool_size = str(random / "poolsize")
        self._files = HeldFiles()
        self._families: Unchanged[list[Metric]] = Unchanged()  # both are constant on 5.18+

    def collect(self) -> list[Metric]:
        raw = (self._files.read(self._available), self._files.read(self._pool_size))
        return self._families.get(raw, lambda: entropy_families(int(raw[0].decode()),
                                                                int(raw[1].decode())))


def entropy_families(available: int, pool_size: int) -> list[Metric]:
    return [
        gauge("node_entropy_available_bits", "Bits of available entropy.", float(available)),
        gauge("node_entropy_pool_size_bits", "Bits of entropy pool.", float(pool_size)),
    ]


def create(context: Context, settings: Any) -> EntropyCollector:
    return EntropyCollector(context.procfs)
