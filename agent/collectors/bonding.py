"""bonding: node_bonding_slaves and node_bonding_active per bonding master, from
/sys/class/net/bonding_masters and each slave's bonding_slave/mii_status, as node_exporter.

No bonding_masters file (the bonding module not loaded) means no series and no error; a master
listed there whose slaves cannot be read fails the run, as in node_exporter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agent.collectors.common import Unchanged, go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def _mii_status(master: Path, slave: str) -> str:
    try:
        return (master / f"lower_{slave}" / "bonding_slave" / "mii_status").read_text()
    except FileNotFoundError:
        # Kernels before 4.13 name the link slave_<name>.
        return (master / f"slave_{slave}" / "bonding_slave" / "mii_status").read_text()


def read_bonding(net: Path) -> dict[str, tuple[int, int]] | None:
    """{master: (slaves, active slaves)}; None when bonding is not in use."""
    try:
        masters = (net / "bonding_masters").read_text().split()
    except FileNotFoundError:
        return None
    status = {}
    for master in masters:
        slaves = (net / master / "bonding" / "slaves").read_text().split()
        up = sum(_mii_status(net / master, slave).strip() == "up" for slave in slaves)
        status[master] = (len(slaves), up)
    return status


def bonding_families(status: dict[str, tuple[int, int]]) -> list[Metric]:
    slaves = GaugeMetricFamily("node_bonding_slaves",
                               "Number of configured slaves per bonding interface.",
                               labels=["master"])
    active = GaugeMetricFamily("node_bonding_active",
                               "Number of active slaves per bonding interface.",
                               labels=["master"])
    for master, (configured, up) in status.items():
        slaves.add_metric([master], configured)
        active.add_metric([master], up)
    return go_order([slaves, active])


class BondingCollector:
    def __init__(self, sysfs: Path) -> None:
        self._net = sysfs / "class" / "net"
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        status = read_bonding(self._net)
        if status is None:
            return []
        return self._unchanged.get(tuple(status.items()), lambda: bonding_families(status))


def create(context: Context, settings: Any) -> BondingCollector:
    return BondingCollector(context.sysfs)
