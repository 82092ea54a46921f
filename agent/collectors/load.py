"""load: node_load1, node_load5 and node_load15 from /proc/loadavg."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Singles, gauge
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

PERIODS = ("1", "5", "15")
_FAMILIES = [(f"node_load{period}", f"{period}m load average.") for period in PERIODS]


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """'0.52 0.58 0.59 2/1234 56789' -> (0.52, 0.58, 0.59)."""
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"unexpected /proc/loadavg content: {text!r}")
    return float(fields[0]), float(fields[1]), float(fields[2])


class LoadCollector:
    def __init__(self, procfs: Path) -> None:
        self._loadavg = str(procfs / "loadavg")
        self._files = HeldFiles()
        self._singles = Singles()  # an idle host's loads stay 0 (the kernel rounds them)

    def collect(self) -> list[Metric]:
        families = load_families(parse_loadavg(self._files.read(self._loadavg).decode()),
                                 self._singles)
        self._singles.done()
        return families


def load_families(loads: tuple[float, float, float],
                  singles: Singles | None = None) -> list[Metric]:
    return [gauge(name, help_text, value, singles)
            for (name, help_text), value in zip(_FAMILIES, loads, strict=True)]


def create(context: Context, settings: Any) -> LoadCollector:
    return LoadCollector(context.procfs)
