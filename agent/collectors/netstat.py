"""netstat: node_netstat_<Protocol>_<Field> (untyped) from /proc/net/{netstat,snmp,snmp6}.

Only the fields whose '<Protocol>_<Field>' key matches the regex are exported, as in
node_exporter; every value must still parse as a number.
"""

from __future__ import annotations

import contextlib
import re
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
        stats[names[0][:-1]] = dict(zip(names[1:], map(float, values[1:]), strict=True))
    return stats


def parse_snmp6(text: str) -> NetStats:
    """/proc/net/snmp6: 'Ip6InReceives  1' -> {'Ip6': {'InReceives': 1.0}}; the protocol
    runs up to the first '6', and lines without a '6' in the name are skipped."""
    stats: NetStats = {}
    for parts in map(str.split, text.splitlines()):
        if len(parts) < 2 or "6" not in parts[0]:
            continue
        protocol, six, name = parts[0].partition("6")
        stats.setdefault(protocol + six, {})[name] = float(parts[1])
    return stats


class NetstatCollector:
    def __init__(self, procfs: Path, fields: str) -> None:
        self._net = procfs / "net"
        self._fields = re.compile(fields)
        # (protocol, its field names) -> the wanted fields' (name, metric name, help)
        self._selections: dict[tuple[str, tuple[str, ...]], list[tuple[str, str, str]]] = {}

    def collect(self) -> list[Metric]:
        stats = parse_netstat(_read(f"{self._net}/netstat"))
        stats.update(parse_netstat(_read(f"{self._net}/snmp")))
        with contextlib.suppress(FileNotFoundError):  # no snmp6 when IPv6 is disabled
            stats.update(parse_snmp6(_read(f"{self._net}/snmp6")))
        families: dict[str, Metric] = {}
        for protocol, values in stats.items():
            for name, full, help_text in self._selection(protocol, values):
                families[full] = family(full, help_text, "unknown",
                                        [sample(full, {}, values[name])])
        return [families[name] for name in sorted(families)]

    def _selection(self, protocol: str, values: dict[str, float]) -> list[tuple[str, str, str]]:
        """A protocol's wanted fields, decided once per set of field names: the kernel's is
        fixed, and most of its ~400 fields are not wanted."""
        key = (protocol, tuple(values))
        selection = self._selections.get(key)
        if selection is None:
            if len(self._selections) > 256:  # bounded, should the names keep changing
                self._selections.clear()
            selection = self._selections[key] = [
                (name, f"node_netstat_{protocol}_{name}", f"Statistic {protocol}{name}.")
                for name in values if self._fields.search(f"{protocol}_{name}")]
        return selection


def _read(path: str) -> str:
    return read_file_bytes(path).decode(errors="replace")


def create(context: Context, settings: Any) -> NetstatCollector:
    return NetstatCollector(context.procfs, settings.fields)
