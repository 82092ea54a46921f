"""vmstat: node_vmstat_<field> (untyped) for the /proc/vmstat fields matching a regex."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import Singles
from agent.collectors.heldfiles import HeldFiles

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


def parse_vmstat(text: str) -> dict[str, float]:
    """'pgfault 5045062' lines -> {'pgfault': 5045062.0}, in file order."""
    fields: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            fields[parts[0]] = float(parts[1])
    return fields


class VmstatCollector:
    def __init__(self, procfs: Path, fields: str) -> None:
        self._vmstat = str(procfs / "vmstat")
        self._files = HeldFiles()
        self._singles = Singles()
        self._fields = re.compile(fields)
        # The kernel's field names, and the selected ones' (key, metric name, help) in
        # output order: the names are the same every read, so the regex runs once per name.
        self._keys: tuple[str, ...] = ()
        self._selected: list[tuple[str, str, str]] = []

    def collect(self) -> list[Metric]:
        stats = parse_vmstat(self._files.read(self._vmstat).decode())
        keys = tuple(stats)
        if keys != self._keys:
            self._keys = keys
            self._selected = _selection(k for k in stats if self._fields.search(k))
        single = self._singles.get
        families = [single(name, help_text, "unknown", stats[key])
                    for key, name, help_text in self._selected]
        self._singles.done()
        return families


def _selection(keys: Iterable[str]) -> list[tuple[str, str, str]]:
    return [(key, f"node_vmstat_{key}", f"/proc/vmstat information field {key}.")
            for key in sorted(keys)]


def create(context: Context, settings: Any) -> VmstatCollector:
    return VmstatCollector(context.procfs, settings.fields)
