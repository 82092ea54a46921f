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

from agent.collectors.common import Singles
from agent.collectors.heldfiles import HeldFiles

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


# A value line of integers, as the kernel writes them: checked at once instead of parsing each
# of the ~400 values when only a few dozen are wanted (anything else is parsed as before).
_INTEGER_VALUES = re.compile(r"\S+(?: -?\d+)*")
_SNMP6_LINE = re.compile(r"^[^\S\n]*(\S+)[^\S\n]+(\S+)", re.MULTILINE)


class NetstatCollector:
    def __init__(self, procfs: Path, fields: str) -> None:
        self._net = procfs / "net"
        self._files = HeldFiles()
        self._singles = Singles()
        self._fields = re.compile(fields)
        # (protocol, its field names) -> the wanted fields' (position, metric name, help)
        self._selections: dict[tuple[str, tuple[str, ...]], list[tuple[int, str, str]]] = {}
        # a header line -> its protocol, field count and wanted fields
        self._headers: dict[str, tuple[str, int, list[tuple[int, str, str]]]] = {}
        # snmp6's line names -> the lines to check and each protocol's wanted lines
        self._snmp6_plans: dict[tuple[str, ...], tuple[
            list[int], list[tuple[str, list[tuple[int, str, str]]]]]] = {}

    def _read(self, path: str) -> str:
        return self._files.read(path).decode(errors="replace")

    def collect(self) -> list[Metric]:
        """What parse_netstat and parse_snmp6 give, the same checks (every value must parse),
        but only the wanted fields converted and no dict built per protocol."""
        # protocol -> its values as written, and which of them are wanted (a protocol seen
        # again replaces the earlier one, as in parse_netstat's dicts).
        stats: dict[str, tuple[list[str], list[tuple[int, str, str]]]] = {}
        self._pairs(self._read(f"{self._net}/netstat"), stats)
        self._pairs(self._read(f"{self._net}/snmp"), stats)
        with contextlib.suppress(FileNotFoundError):  # no snmp6 when IPv6 is disabled
            self._snmp6(self._read(f"{self._net}/snmp6"), stats)
        families: dict[str, Metric] = {}
        single = self._singles.get
        for values, selection in stats.values():
            for index, full, help_text in selection:
                families[full] = single(full, help_text, "unknown", float(values[index]))
        self._singles.done()
        return [families[name] for name in sorted(families)]

    def _pairs(self, text: str, stats: dict[str, tuple[list[str], list[tuple[int, str, str]]]]
               ) -> None:
        """/proc/net/netstat or /proc/net/snmp, checked as parse_netstat checks it."""
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) % 2:
            raise ValueError("odd number of lines: every header line needs a value line")
        for header, line in zip(lines[::2], lines[1::2], strict=True):
            known = self._headers.get(header)
            if known is None:
                names = header.split()
                if len(self._headers) > 64:  # bounded, should the headers keep changing
                    self._headers.clear()
                known = self._headers[header] = (
                    names[0], len(names), self._selection(names[0][:-1], names[1:]))
            first, count, selection = known
            values = line.split()
            if not first.endswith(":") or len(values) != count:
                raise ValueError(f"field count mismatch for {first!r}")
            if not _INTEGER_VALUES.fullmatch(line.strip()):
                # Not plain integers: every value must still parse, as parse_netstat's
                # (this raises the same ValueError on one that does not).
                list(map(float, values[1:]))
            stats[first[:-1]] = (values, selection)

    def _snmp6(self, text: str, stats: dict[str, tuple[list[str], list[tuple[int, str, str]]]]
               ) -> None:
        """/proc/net/snmp6 as parse_snmp6 reads it."""
        pairs = _SNMP6_LINE.findall(text)
        names = tuple(name for name, _ in pairs)
        plan = self._snmp6_plans.get(names)
        if plan is None:
            if len(self._snmp6_plans) > 16:  # bounded, should the names keep changing
                self._snmp6_plans.clear()
            plan = self._snmp6_plans[names] = self._snmp6_plan(names)
        values = [value for _, value in pairs]
        if not _INTEGER_VALUES.fullmatch(" ".join(["-", *values])):
            for index in plan[0]:  # every value of a protocol's field must parse
                float(values[index])
        for protocol, selection in plan[1]:
            stats[protocol] = (values, selection)

    def _snmp6_plan(self, names: tuple[str, ...]
                    ) -> tuple[list[int], list[tuple[str, list[tuple[int, str, str]]]]]:
        """The lines that are a protocol's fields, and each protocol's wanted ones (positions
        among all lines)."""
        fields: dict[str, dict[str, int]] = {}  # protocol -> field -> its (last) line
        counted = []
        for index, name in enumerate(names):
            if "6" in name:
                protocol, six, field_name = name.partition("6")
                fields.setdefault(protocol + six, {})[field_name] = index
                counted.append(index)
        plan = []
        for protocol, lines in fields.items():
            by_position = list(lines)
            plan.append((protocol, [(lines[by_position[position - 1]], full, help_text)
                                    for position, full, help_text
                                    in self._selection(protocol, by_position)]))
        return counted, plan

    def _selection(self, protocol: str, names: list[str]) -> list[tuple[int, str, str]]:
        """A protocol's wanted fields (position among its values, counting the protocol's
        own first, metric name, help), decided once per set of field names: the kernel's is
        fixed, and most of its ~400 fields are not wanted."""
        key = (protocol, tuple(names))
        selection = self._selections.get(key)
        if selection is None:
            if len(self._selections) > 256:  # bounded, should the names keep changing
                self._selections.clear()
            # A name given twice: its last value, as a dict of the pairs would hold.
            last = {name: index for index, name in enumerate(names, 1)}
            selection = self._selections[key] = [
                (last[name], f"node_netstat_{protocol}_{name}", f"Statistic {protocol}{name}.")
                for name in last if self._fields.search(f"{protocol}_{name}")]
        return selection




def create(context: Context, settings: Any) -> NetstatCollector:
    return NetstatCollector(context.procfs, settings.fields)
