"""netstat: node_netstat_<Protocol>_<Field> (untyped) from /proc/net/{netstat,snmp,snmp6}.

Only the fields whose '<Protocol>_<Field>' key matches the regex are exported, as in
node_exporter; every value must still parse as a number.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import family, read_file_bytes, sample

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

NetStats = dict[str, dict[str, float]]


def parse_netstat(text: str) -> NetStats:
    """/proc/net/netstat or /proc/net/snmp: pairs of 'Proto: Name...' and 'Proto: Value...'
    lines -> {'Tcp': {'ActiveOpens': 2031.0, ...}, ...}."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise ValueError("odd number of lines: every header line needs a value line")
    stats: NetStats = {}
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if not names[0].endswith(":") or len(names) != len(values):
            raise ValueError(f"field count mismatch for {names[0]!r}")
        stats[names[0][:-1]] = {
            name: float(value) for name, value in zip(names[1:], values[1:], strict=True)}
    return stats


def parse_snmp6(text: str) -> NetStats:
    """/proc/net/snmp6: 'Ip6InReceives  1' -> {'Ip6': {'InReceives': 1.0}}; the protocol
    runs up to the first '6', and lines without a '6' in the name are skipped."""
    stats: NetStats = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or "6" not in parts[0]:
            continue
        protocol, six, name = parts[0].partition("6")
        stats.setdefault(protocol + six, {})[name] = float(parts[1])
    return stats


class NetstatCollector:
    def __init__(self, procfs: Path, fields: str) -> None:
        self._net = procfs / "net"
        self._fields = re.compile(fields)
        self._decisions: dict[str, bool] = {}

    def collect(self) -> list[Metric]:
        stats = parse_netstat(_read(f"{self._net}/netstat"))
        stats.update(parse_netstat(_read(f"{self._net}/snmp")))
        with contextlib.suppress(FileNotFoundError):  # no snmp6 when IPv6 is disabled
            stats.update(parse_snmp6(_read(f"{self._net}/snmp6")))
        return netstat_families(stats, self._wanted)

    def _wanted(self, key: str) -> bool:
        """The fields regex, decided once per field name (the kernel's set is fixed)."""
        wanted = self._decisions.get(key)
        if wanted is None:
            wanted = self._decisions[key] = bool(self._fields.search(key))
        return wanted


def _read(path: str) -> str:
    return read_file_bytes(path).decode(errors="replace")


def netstat_families(stats: NetStats, wanted: Callable[[str], object]) -> list[Metric]:
    families: dict[str, Metric] = {}
    for protocol, values in stats.items():
        for name, value in values.items():
            key = f"{protocol}_{name}"
            if wanted(key):
                full = f"node_netstat_{key}"
                families[full] = family(full, f"Statistic {protocol}{name}.", "unknown",
                                        [sample(full, {}, value)])
    return [families[name] for name in sorted(families)]


def create(context: Context, settings: Any) -> NetstatCollector:
    return NetstatCollector(context.procfs, settings.fields)
