"""process-exporter's grouping configuration: `process_names` entries with `comm`, `exe` and
`cmdline` matchers and a name template (`{{.Comm}}`, `{{.ExeBase}}`, `{{.ExeFull}}`,
`{{.Username}}`, `{{.PID}}`, `{{.StartTime}}`, `{{.Matches.NAME}}`), so an existing
process-exporter config file works unchanged. The first entry that matches names the group."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_FIELD = re.compile(r"\{\{\s*\.(\w+)(?:\.(\w+))?\s*\}\}")
FIELDS = frozenset({"Comm", "ExeBase", "ExeFull", "Username", "PID", "StartTime", "Matches"})
DEFAULT_TEMPLATE = "{{.ExeBase}}"


@dataclass(frozen=True)
class ProcessIdentity:
    """What matching and naming look at, read once per process."""

    pid: int
    comm: str
    cmdline: tuple[str, ...]
    username: str
    start_time: float  # seconds since the epoch

    @property
    def exe_full(self) -> str:
        return self.cmdline[0] if self.cmdline else self.comm

    @property
    def exe_base(self) -> str:
        return os.path.basename(self.exe_full)


@dataclass(frozen=True)
class Matcher:
    template: str
    comm: frozenset[str] | None
    exe: tuple[str, ...] | None
    cmdline: tuple[re.Pattern[str], ...] | None

    def match(self, proc: ProcessIdentity) -> dict[str, str] | None:
        """The named captures of the cmdline regexes when every given matcher matches."""
        if self.comm is not None and proc.comm not in self.comm:
            return None
        if self.exe is not None and not any(
                (proc.exe_full if "/" in exe else proc.exe_base) == exe for exe in self.exe):
            return None
        captures: dict[str, str] = {}
        if self.cmdline is not None:
            joined = " ".join(proc.cmdline)
            for pattern in self.cmdline:
                found = pattern.search(joined)
                if found is None:
                    return None
                captures.update({k: v for k, v in found.groupdict().items() if v is not None})
        return captures

    def name(self, proc: ProcessIdentity, captures: Mapping[str, str]) -> str:
        values = {"Comm": proc.comm, "ExeBase": proc.exe_base, "ExeFull": proc.exe_full,
                  "Username": proc.username, "PID": str(proc.pid),
                  "StartTime": str(proc.start_time)}

        def field(found: re.Match[str]) -> str:
            if found.group(1) == "Matches":
                return captures.get(found.group(2) or "", "")
            return values[found.group(1)]

        return _FIELD.sub(field, self.template)


class GroupingError(ValueError):
    """A process_names entry that cannot be used; the message names the entry and the key."""


def _strings(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise GroupingError(f"{where}.{key}: must be a non-empty list of strings")
    return tuple(value)


def parse_entry(entry: Any, where: str) -> Matcher:
    if not isinstance(entry, dict):
        raise GroupingError(f"{where}: must be a mapping")
    unknown = set(entry) - {"name", "comm", "exe", "cmdline"}
    if unknown:
        raise GroupingError(f"{where}.{sorted(unknown)[0]}: unknown field")
    template = entry.get("name", DEFAULT_TEMPLATE)
    if not isinstance(template, str) or not template:
        raise GroupingError(f"{where}.name: must be a non-empty string")
    for found in _FIELD.finditer(template):
        if found.group(1) not in FIELDS or (found.group(1) == "Matches") != bool(found.group(2)):
            raise GroupingError(f"{where}.name: unsupported template field {found.group(0)}")
    if "{{" in _FIELD.sub("", template):
        raise GroupingError(f"{where}.name: only {{{{.Field}}}} substitutions are supported")
    comm, exe, cmdline = (_strings(entry, key, where) for key in ("comm", "exe", "cmdline"))
    if comm is None and exe is None and cmdline is None:
        raise GroupingError(f"{where}: needs at least one of comm, exe, cmdline")
    patterns = None
    if cmdline is not None:
        try:
            patterns = tuple(re.compile(p) for p in cmdline)
        except re.error as exc:
            raise GroupingError(f"{where}.cmdline: invalid regular expression: {exc}") from None
    return Matcher(template, None if comm is None else frozenset(comm), exe, patterns)


def parse_process_names(entries: Any, where: str = "process_names") -> tuple[Matcher, ...]:
    if not isinstance(entries, list):
        raise GroupingError(f"{where}: must be a list")
    return tuple(parse_entry(entry, f"{where}[{i}]") for i, entry in enumerate(entries))


def load_config_file(path: Path) -> tuple[Matcher, ...]:
    """A process-exporter configuration file (`process_names: [...]`)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GroupingError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GroupingError(f"{path}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or "process_names" not in data:
        raise GroupingError(f"{path}: expected a mapping with process_names")
    return parse_process_names(data["process_names"], f"{path}: process_names")


def group_of(matchers: Sequence[Matcher], proc: ProcessIdentity) -> str | None:
    for matcher in matchers:
        captures = matcher.match(proc)
        if captures is not None:
            return matcher.name(proc, captures)
    return None
