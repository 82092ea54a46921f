"""sockstat: node_sockstat_* gauges from /proc/net/sockstat and /proc/net/sockstat6.

Names follow node_exporter: node_sockstat_sockets_used (IPv4 only), then
node_sockstat_<PROTOCOL>_<key> for the keys below, plus <PROTOCOL>_mem_bytes where the
protocol reports 'mem', which the kernel counts in pages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Singles, Unchanged, gauge
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# The keys node_exporter knows; others are ignored. 'inuse' is exported even when absent.
KEYS = ("inuse", "orphan", "tw", "alloc", "mem", "memory")

Sockstat = dict[str, dict[str, int]]


def parse_sockstat(text: str) -> Sockstat:
    """'TCP: inuse 4 orphan 0 tw 41 alloc 4 mem 1' -> {'TCP': {'inuse': 4, ...}};
    the 'sockets: used N' line comes out as {'sockets': {'used': N}}."""
    stats: Sockstat = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or len(fields) % 2 == 0:
            raise ValueError(f"malformed sockstat line: {line!r}")
        pairs = fields[1:]
        stats[fields[0].removesuffix(":")] = dict(zip(pairs[::2], map(int, pairs[1::2]),
                                                      strict=True))
    return stats


class SockstatCollector:
    def __init__(self, procfs: Path, page_size: int | None = None) -> None:
        self._paths = {name: str(procfs / "net" / name) for name in ("sockstat", "sockstat6")}
        self._files = HeldFiles()
        self._page_size = page_size if page_size is not None else os.sysconf("SC_PAGE_SIZE")
        # An idle host's sockstat reads the same bytes tick after tick; a family whose value
        # did not change is the same object.
        self._families: Unchanged[list[Metric]] = Unchanged()
        self._singles = Singles()

    def collect(self) -> list[Metric]:
        raw = (self._read("sockstat"), self._read("sockstat6"))
        return self._families.get(raw, lambda: self._build(*raw))

    def _build(self, ipv4: bytes | None, ipv6: bytes | None) -> list[Metric]:
        families = sockstat_families(
            None if ipv4 is None else parse_sockstat(ipv4.decode()),
            None if ipv6 is None else parse_sockstat(ipv6.decode()), self._page_size,
            self._singles)
        self._singles.done()
        return families

    def _read(self, name: str) -> bytes | None:
        try:
            return self._files.read(self._paths[name])
        except FileNotFoundError:  # that IP version is disabled
            return None


def sockstat_families(ipv4: Sockstat | None, ipv6: Sockstat | None,
                      page_size: int, singles: Singles | None = None) -> list[Metric]:
    values: dict[str, tuple[str, float]] = {}  # metric name -> (help, value)
    for stats, is_ipv6 in ((ipv4, False), (ipv6, True)):
        for protocol, pairs in (stats or {}).items():
            if protocol == "sockets":
                if not is_ipv6:
                    values["sockets_used"] = ("Number of IPv4 sockets in use.",
                                              pairs.get("used", 0))
                continue
            found = {"inuse": pairs.get("inuse", 0)}
            found.update((key, pairs[key]) for key in KEYS if key in pairs)
            if "mem" in pairs:
                found["mem_bytes"] = pairs["mem"] * page_size
            for key, value in found.items():
                values[f"{protocol}_{key}"] = (
                    f"Number of {protocol} sockets in state {key}.", value)
    return [gauge(f"node_sockstat_{name}", help_text, value, singles)
            for name, (help_text, value) in sorted(values.items())]


def create(context: Context, settings: Any) -> SockstatCollector:
    return SockstatCollector(context.procfs)
