"""cgroups: node_cgroups_cgroups and node_cgroups_enabled per controller from /proc/cgroups,
as node_exporter's cgroups collector (off by default; its help text for both, as there).
Kernels without /proc/cgroups (6.12+ without cgroup v1) are no data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

HELP = "Current cgroup number of the subsystem."


def parse_cgroups(text: str) -> list[tuple[str, int, int, int]]:
    """(subsys_name, hierarchy, num_cgroups, enabled) per line; comment lines are skipped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 4:
            raise ValueError(f"4+ fields required, found {len(fields)} fields in cgroup info "
                             f"string: {line}")
        try:
            rows.append((fields[0], int(fields[1]), int(fields[2]), int(fields[3])))
        except ValueError:
            raise ValueError(f"unable to parse cgroup info string: {line}") from None
    return rows


def cgroups_families(rows: list[tuple[str, int, int, int]]) -> list[Metric]:
    cgroups = GaugeMetricFamily("node_cgroups_cgroups", HELP, labels=["subsys_name"])
    enabled = GaugeMetricFamily("node_cgroups_enabled", HELP, labels=["subsys_name"])
    seen = set()
    for name, _, count, on in rows:
        if name in seen:
            continue
        seen.add(name)
        cgroups.add_metric([name], float(count))
        enabled.add_metric([name], float(on))
    return go_order([cgroups, enabled])


class CgroupsCollector:
    def __init__(self, procfs: Path) -> None:
        self._path = procfs / "cgroups"

    def collect(self) -> list[Metric]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return cgroups_families(parse_cgroups(text))


def create(context: Context, settings: Any) -> CgroupsCollector:
    return CgroupsCollector(context.procfs)
