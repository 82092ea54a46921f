"""interrupts: node_interrupts_total{cpu,type,info,devices} from /proc/interrupts, as
node_exporter's interrupts collector (the cpu label is the column's position among the
online CPUs the header lists, as there)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.collectors.common import DeviceFilter, go_order

if TYPE_CHECKING:
    from agent.collectors.catalog import Context


@dataclass(frozen=True)
class Interrupt:
    info: str
    devices: str
    values: tuple[str, ...]


def parse_interrupts(text: str) -> dict[str, Interrupt]:
    lines = text.splitlines()
    if not lines:
        raise ValueError("interrupts empty")
    cpus = len(lines[0].split())  # one header per online CPU
    interrupts: dict[str, Interrupt] = {}
    for line in lines[1:]:
        # On aarch64 there may be no space between the name and the first value.
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        parts = rest.split()
        if len(parts) < cpus + 1:
            continue  # ERR and MIS have one total, not a column per CPU
        name = name.lstrip(" ")
        if name.isdigit():
            info, devices = parts[cpus], " ".join(parts[cpus + 1:])
        else:
            info, devices = " ".join(parts[cpus:]), ""
        interrupts[name] = Interrupt(info, devices, tuple(parts[:cpus]))
    return interrupts


def interrupts_families(interrupts: dict[str, Interrupt], name_filter: DeviceFilter,
                        include_zeros: bool) -> list[Metric]:
    family = CounterMetricFamily("node_interrupts", "Interrupt details.",
                                 labels=["cpu", "type", "info", "devices"])
    for name, interrupt in interrupts.items():
        if name_filter.ignored(f"{name};{interrupt.info};{interrupt.devices}"):
            continue
        for cpu, text in enumerate(interrupt.values):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"invalid value {text} in interrupts") from None
            if value == 0 and not include_zeros:
                continue
            family.add_metric([str(cpu), name, interrupt.info, interrupt.devices], value)
    return go_order([family])


class InterruptsCollector:
    def __init__(self, procfs: Path, name_include: str | None = None,
                 name_exclude: str | None = None, include_zeros: bool = True) -> None:
        self._path = procfs / "interrupts"
        self._filter = DeviceFilter(name_include, name_exclude)
        self._include_zeros = include_zeros

    def collect(self) -> list[Metric]:
        return interrupts_families(parse_interrupts(self._path.read_text()), self._filter,
                                   self._include_zeros)


def create(context: Context, settings: Any) -> InterruptsCollector:
    return InterruptsCollector(context.procfs, settings.name_include, settings.name_exclude,
                               settings.include_zeros)
