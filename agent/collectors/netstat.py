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

from agent.collectors.common import family, sample
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
# The bytes the kernel writes in /proc/net/netstat and snmp: such a file splits the same as
# bytes as decoded (no other whitespace, nothing to replace), so it is read without decoding.
_PLAIN = b"".join(bytes([c]) for c in range(128) if chr(c).isalnum() or chr(c) in " :-_\n")

Selection = list[tuple[int, str, str]]
# protocol -> its values as written, and which of them are wanted
Stats = dict[str, tuple[list[str] | list[bytes], Selection]]
Plan = tuple[list[int], list[tuple[str, Selection]]]


class NetstatCollector:
    def __init__(self, procfs: Path, fields: str) -> None:
        self._net = procfs / "net"
        self._files = HeldFiles()
        self._fields = re.compile(fields)
        # metric name -> the value as written and its family, as last handed out
        self._last: dict[str, tuple[bytes | str, Metric]] = {}
        self._order: tuple[list[str], list[str]] = ([], [])  # names as found, sorted
        # (protocol, its field names) -> the wanted fields' (position, metric name, help)
        self._selections: dict[tuple[str, tuple[str, ...]], list[tuple[int, str, str]]] = {}
        # a header line -> its protocol, field count and wanted fields
        self._headers: dict[bytes, tuple[str, int, Selection]] = {}
        # snmp6's line names -> the lines to check and each protocol's wanted lines
        self._snmp6_plans: dict[tuple[str, ...], Plan] = {}
        self._snmp6_last: tuple[list[str], Plan] = ([], ([], []))  # the last names' plan

    def _read(self, path: str) -> str:
        return self._files.read(path).decode(errors="replace")

    def collect(self) -> list[Metric]:
        """What parse_netstat and parse_snmp6 give, the same checks (every value must parse),
        but only the wanted fields converted and no dict built per protocol."""
        # protocol -> its values as written, and which of them are wanted (a protocol seen
        # again replaces the earlier one, as in parse_netstat's dicts).
        stats: Stats = {}
        self._pairs(self._files.read(f"{self._net}/netstat"), stats)
        self._pairs(self._files.read(f"{self._net}/snmp"), stats)
        with contextlib.suppress(FileNotFoundError):  # no snmp6 when IPv6 is disabled
            self._snmp6(self._read(f"{self._net}/snmp6"), stats)
        # Each a family of one untyped sample; one whose value is written as before is
        # handed out again (the renderer skips it at once).
        last = self._last
        families: dict[str, Metric] = {}
        for values, selection in stats.values():
            for index, full, help_text in selection:
                written = values[index]
                old = last.get(full)
                if old is None or old[0] != written:
                    old = last[full] = (written, family(
                        full, help_text, "unknown", [sample(full, {}, float(written))]))
                families[full] = old[1]
        names = list(families)
        if names != self._order[0]:
            self._order = (names, sorted(names))
            for gone in last.keys() - families.keys():
                del last[gone]
        return [families[name] for name in self._order[1]]

    def _pairs(self, data: bytes, stats: Stats) -> None:
        """/proc/net/netstat or /proc/net/snmp, checked as parse_netstat checks it. The
        kernel's plain bytes are split as they are; anything else is read as parse_netstat
        reads it (decoded, undecodable bytes replaced, split at any whitespace), then split
        the same way."""
        if data.translate(None, _PLAIN):
            data = "\n".join(" ".join(line.split()) for line in
                             data.decode(errors="replace").splitlines()).encode()
        lines = [line for line in data.split(b"\n") if line.strip()]
        if len(lines) % 2:
            raise ValueError("odd number of lines: every header line needs a value line")
        headers = self._headers
        for header, line in zip(lines[::2], lines[1::2], strict=True):
            known = headers.get(header)
            if known is None:
                names = header.decode().split()
                if len(headers) > 64:  # bounded, should the headers keep changing
                    headers.clear()
                known = headers[header] = (
                    names[0], len(names), self._selection(names[0][:-1], names[1:]))
            first, count, selection = known
            values = line.split()
            if not first.endswith(":") or len(values) != count:
                raise ValueError(f"field count mismatch for {first!r}")
            if not b"".join(values[1:]).isdigit():
                # Not all plain unsigned integers: every value must still parse, as
                # parse_netstat's (this raises the same ValueError on one that does not).
                for value in values[1:]:
                    float(value.decode())
            stats[first[:-1]] = (values, selection)

    def _snmp6(self, text: str, stats: Stats
               ) -> None:
        """/proc/net/snmp6 as parse_snmp6 reads it."""
        # Each line's words, as parse_snmp6 splits them.
        rows = [words for words in map(str.split, text.splitlines()) if len(words) >= 2]
        names = [words[0] for words in rows]
        if names == self._snmp6_last[0]:
            plan = self._snmp6_last[1]
        else:
            key = tuple(names)
            known = self._snmp6_plans.get(key)
            if known is None:
                if len(self._snmp6_plans) > 16:  # bounded, should the names keep changing
                    self._snmp6_plans.clear()
                known = self._snmp6_plans[key] = self._snmp6_plan(key)
            plan = known
            self._snmp6_last = (names, plan)
        values = [words[1] for words in rows]
        joined = "".join(values)
        if not (joined.isascii() and joined.isdigit()) and not _INTEGER_VALUES.fullmatch(
                " ".join(["-", *values])):
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
