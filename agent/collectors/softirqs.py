"""softirqs: node_softirqs_functions_total{cpu,type} from /proc/softirqs, as node_exporter's
softirqs collector (off by default). The cpu label is the column's position, as there; the ten
vectors procfs knows are exported, others (a newer kernel's) are left out as there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import go_order, parse_int

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

VECTORS = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
           "HRTIMER", "RCU")


def parse_softirqs(text: str) -> dict[str, list[int]]:
    """Counts per CPU for each known vector; the header line is skipped, as procfs does."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("softirqs empty")
    vectors: dict[str, list[int]] = {}
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        name = parts[0][:-1]
        if name not in VECTORS:
            continue
        counts = []
        for cpu, text_value in enumerate(parts[1:]):
            value = parse_int(text_value)
            if value is None or value < 0:
                raise ValueError(f"couldn't parse {text_value!r} ({name}{cpu})")
            counts.append(value)
        vectors[name] = counts
    return vectors


def softirqs_families(vectors: dict[str, list[int]]) -> list[Metric]:
    family = CounterMetricFamily("node_softirqs_functions", "Softirq counts per CPU.",
                                 labels=["cpu", "type"])
    for name in VECTORS:
        for cpu, value in enumerate(vectors.get(name, ())):
            family.add_metric([str(cpu), name], float(value))
    return go_order([family])


class SoftirqsCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "softirqs"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return softirqs_families(parse_softirqs(text))


def create(context: Context, settings: Any) -> SoftirqsCollector:
    return SoftirqsCollector(context.procfs)
