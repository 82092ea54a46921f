"""cpufreq: node_cpu_frequency_* and node_cpu_scaling_* from
/sys/devices/system/cpu/cpu*/cpufreq, as node_exporter's latest release (kHz -> Hz).

An attribute the CPU does not have, or that only root may read (cpuinfo_cur_freq), is left
out; CPUs without a cpufreq directory report nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric

from agent.collectors.common import (
    Families,
    Unchanged,
    open_dir,
    parse_int,
    read_attribute,
    read_text,
)

if TYPE_CHECKING:
    from agent.collectors.catalog import Context

# (attribute, metric, help), in node_exporter's order.
FREQUENCIES = (
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz", "Current CPU thread frequency in hertz."),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz",
     "Minimum CPU thread frequency in hertz."),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz",
     "Maximum CPU thread frequency in hertz."),
    ("scaling_cur_freq", "node_cpu_scaling_frequency_hertz",
     "Current scaled CPU thread frequency in hertz."),
    ("scaling_min_freq", "node_cpu_scaling_frequency_min_hertz",
     "Minimum scaled CPU thread frequency in hertz."),
    ("scaling_max_freq", "node_cpu_scaling_frequency_max_hertz",
     "Maximum scaled CPU thread frequency in hertz."),
)


def cpufreq_families(cpus: dict[str, dict[str, str]]) -> list[Metric]:
    """cpu number -> {attribute: trimmed value} of its cpufreq directory."""
    out = Families()
    for cpu, attributes in cpus.items():
        for attribute, name, help_text in FREQUENCIES:
            khz = parse_int(attributes.get(attribute, ""))
            if khz is not None and khz >= 0:
                out.add(name, help_text, ("cpu",), [cpu], khz * 1000.0)
        governor = attributes.get("scaling_governor", "")
        if governor:
            for available in attributes.get("scaling_available_governors", "").split(" "):
                out.add("node_cpu_scaling_governor", "Current enabled CPU frequency governor.",
                        ("cpu", "governor"), [cpu, available],
                        1.0 if available == governor else 0.0)
    return out.result()


def read_cpufreq(sysfs: Path) -> dict[str, dict[str, str]]:
    cpus: dict[str, dict[str, str]] = {}
    base = f"{sysfs}/devices/system/cpu"
    try:
        names = sorted(n for n in os.listdir(base)  # glob's cpu[0-9]*
                       if n.startswith("cpu") and n[3:4].isascii() and n[3:4].isdigit())
    except OSError:
        return cpus
    for cpu in names:
        try:
            directory = open_dir(f"{base}/{cpu}/cpufreq")
        except OSError:
            continue
        attributes: dict[str, str] = {}
        # Attributes opened relative to the directory: no path resolution for each.
        with directory as dir_fd:
            for attribute, _, _ in FREQUENCIES:
                value = read_text(attribute, dir_fd)
                if value is not None:
                    attributes[attribute] = value
            for attribute in ("scaling_governor", "scaling_available_governors"):
                value = read_attribute(attribute, dir_fd)
                if value is not None:
                    attributes[attribute] = value
        cpus[cpu.removeprefix("cpu")] = attributes
    return cpus


class CpufreqCollector:
    def __init__(self, sysfs: Path) -> None:
        self._sysfs = sysfs
        self._unchanged: Unchanged[list[Metric]] = Unchanged()

    def collect(self) -> list[Metric]:
        cpus = read_cpufreq(self._sysfs)
        raw = tuple((cpu, tuple(attributes.items())) for cpu, attributes in cpus.items())
        return self._unchanged.get(raw, lambda: cpufreq_families(cpus))


def create(context: Context, settings: Any) -> CpufreqCollector:
    return CpufreqCollector(context.sysfs)
