"""lnstat: node_lnstat_<counter>_total{subsystem,cpu} from every /proc/net/stat/* table
(arp_cache, ndisc_cache, nf_conntrack, rt_cache, ...), as node_exporter's lnstat collector
(off by default). Each table is a header line of counter names, then one line of hexadecimal
values per CPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Families, list_dir

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def parse_table(text: str) -> dict[str, list[int]]:
    """Counter name -> value per CPU line."""
    lines = text.splitlines()
    headers = lines[0].split() if lines else []
    stats: dict[str, list[int]] = {}
    for line in lines[1:]:
        for column, field in enumerate(line.split()):
            if column >= len(headers):
                raise ValueError(f"more values than counter names in line {line!r}")
            try:
                value = int(field, 16)
            except ValueError:
                raise ValueError(f"invalid hexadecimal value {field!r}") from None
            stats.setdefault(headers[column], []).append(value)
    return stats


def lnstat_families(tables: dict[str, dict[str, list[int]]]) -> list[Metric]:
    families = Families()
    for subsystem, stats in tables.items():
        for header, values in stats.items():
            for cpu, value in enumerate(values):
                families.add(f"node_lnstat_{header}_total", "linux network cache stats",
                             ["subsystem", "cpu"], [subsystem, str(cpu)], float(value),
                             counter=True)
    return families.result()


class LnstatCollector:
    def __init__(self, procfs: Path) -> None:
        self._root = procfs / "net/stat"

    def collect(self) -> list[Metric]:
        tables = {}
        for name in list_dir(self._root):
            try:
                text = (self._root / name).read_text()
            except OSError:
                continue
            tables[name] = parse_table(text)
        return lnstat_families(tables)


def create(context: Context, settings: Any) -> LnstatCollector:
    return LnstatCollector(context.procfs)
